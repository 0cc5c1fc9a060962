"""OpenAI's request bodies: chat completions, text completions, embeddings (as the official SDK sends them)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from inference.schemas.common import ClientModel, Text

MAX_STOP_SEQUENCES = 16
# Stop strings are matched against every decoded piece on the engine thread: bounded, so no request can
# buy seconds of its CPU (16 stops of 200,000 characters did).
MAX_STOP_LENGTH = 256
MAX_STOP_TOTAL = 1024
# OpenAI takes seeds as 64-bit integers; accept both the signed and the unsigned range.
MIN_SEED = -(2**63)
MAX_SEED = 2**64 - 1
MODEL_NAME = Field(min_length=1, max_length=200)
# One request embeds at most this many inputs, as OpenAI's endpoint allows.
MAX_EMBEDDING_INPUTS = 2048
# Alternatives per token (OpenAI's limit), choices per prompt, prompts per text completion.
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 16
MAX_PROMPTS = 64
CACHE_HINTS = frozenset({"cache_control", "prompt_cache_breakpoint"})


def check_stops(value: str | list[str] | None) -> str | list[str] | None:
    stops = [value] if isinstance(value, str) else list(value or [])
    if any(len(stop) > MAX_STOP_LENGTH for stop in stops):
        raise ValueError(f"a stop sequence may have at most {MAX_STOP_LENGTH} characters")
    if sum(len(stop) for stop in stops) > MAX_STOP_TOTAL:
        raise ValueError(f"the stop sequences may have at most {MAX_STOP_TOTAL} characters in all")
    return value


# ---- content parts ---------------------------------------------------------------------------------------


class TextPart(ClientModel):
    IGNORED = CACHE_HINTS
    type: Literal["text"]
    text: Text


class RefusalPart(ClientModel):
    type: Literal["refusal"]
    refusal: Text


class ImageUrl(ClientModel):
    url: str
    detail: str | None = None  # auto, low, high: the model sees the image it is given, whatever the hint


class ImagePart(ClientModel):
    IGNORED = CACHE_HINTS
    type: Literal["image_url"]
    image_url: ImageUrl


class AudioPart(ClientModel):
    REFUSED = {"input_audio": "Audio inputs are not supported: MLX Hub serves text and image models."}
    type: Literal["input_audio"]
    input_audio: Any = None


class FilePart(ClientModel):
    REFUSED = {"file": "File inputs are not supported; send the text, or images as image_url parts."}
    type: Literal["file"]
    file: Any = None


ContentPart = Annotated[TextPart | RefusalPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]


# ---- messages ---------------------------------------------------------------------------------------------


class ToolCallFunction(ClientModel):
    name: Text
    arguments: Text = "{}"


class ToolCall(ClientModel):
    id: Text
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(ClientModel):
    # An assistant message echoed from the SDK's own object carries these; they change nothing.
    IGNORED = frozenset({"annotations", "refusal"})
    REFUSED = {"audio": "Audio outputs are not supported; this assistant message refers to one."}

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None  # who spoke (no effect on the prompt), or a deprecated function message's function
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Text | None = None
    function_call: ToolCallFunction | None = None  # the deprecated single call
    audio: Any = None  # null when echoed; {"id": …} refers to audio MLX Hub never made

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            part.text if isinstance(part, TextPart) else part.refusal
            for part in self.content
            if isinstance(part, TextPart | RefusalPart)
        )


# ---- tools and formats ---------------------------------------------------------------------------------------


class FunctionDefinition(ClientModel):
    IGNORED = frozenset({"strict"})  # every enforced call is valid for its schema, strict or not
    name: Any = None
    description: Any = None
    parameters: Any = None


class ChatTool(ClientModel):
    IGNORED = CACHE_HINTS
    type: str = "function"
    function: FunctionDefinition | None = None
    # Custom tools (free text or a grammar) are a newer kind; refused below with their type named.


class JsonSchemaFormat(ClientModel):
    IGNORED = frozenset({"strict", "description"})  # enforced either way; what cannot be enforced is a 400
    name: Text | None = None
    schema_: Any = Field(default=None, alias="schema")


class ResponseFormat(ClientModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(ClientModel):
    IGNORED = frozenset({"include_obfuscation"})
    include_usage: bool = False


# ---- bodies ---------------------------------------------------------------------------------------------------


class SamplingFields(ClientModel):
    IGNORED = frozenset(
        {
            "metadata",
            "store",
            "user",
            "prompt_cache_key",
            "prompt_cache_retention",
            "prompt_cache_options",
            "safety_identifier",
            "service_tier",
            "verbosity",
            "reasoning_effort",
        }
    )
    model: Text = MODEL_NAME
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    seed: int | None = Field(default=None, ge=MIN_SEED, le=MAX_SEED)
    stop: Text | list[Text] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: Text | None = Field(default=None, max_length=256)
    n: int | None = Field(default=None, ge=1, le=128)
    logprobs: Any = None  # chat: a boolean; completions: how many alternatives per token (checked per endpoint)
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key in value or {}:
            if not key.lstrip("-").isdigit() or int(key) < 0:
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return check_stops(value)

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: bool | None) -> bool:
        return bool(value)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    REFUSED: ClassVar[dict[str, str]] = {
        "audio": "Audio outputs are not supported: MLX Hub serves text and image models.",
        "prediction": "Predicted outputs are not supported.",
        "web_search_options": "Web search is not supported by MLX Hub's models.",
        "moderation": "Moderation is not supported.",
    }
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ChatTool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None  # the deprecated form of tools
    function_call: Any = None  # the deprecated form of tool_choice
    response_format: ResponseFormat | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    moderation: Any = None
    # Thinking models (inference.thinking): to the chat template, and vLLM's cap on the thinking's tokens.
    reasoning_effort: Text | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    thinking_token_budget: int | None = Field(default=None, ge=0)


class CompletionRequest(SamplingFields):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)  # 0 with echo scores the prompt, generating nothing
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingsRequest(ClientModel):
    IGNORED = frozenset({"user", "metadata"})
    model: Text = MODEL_NAME
    # A string, a list of strings, a list of token ids (one input), or a list of token id lists.
    input: Text | list[Text] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: Text | None = Field(default=None, max_length=256)

    def inputs(self) -> list[str | list[int]]:
        value = self.input
        if isinstance(value, str):
            items: list[str | list[int]] = [value]
        elif value and all(isinstance(item, int) for item in value):
            items = [[int(item) for item in value if isinstance(item, int)]]
        else:
            items = list(value)  # type: ignore[arg-type]
        if not items:
            raise ValueError("input must not be empty")
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(items)}")
        for item in items:
            if not item:
                raise ValueError("input must not contain empty strings or empty token lists")
        return items
