"""Pydantic v2 schemas for the OpenAI-compatible request bodies.

Unknown fields are refused (extra="forbid") so nothing is silently ignored;
fields the engine does not honour yet are refused with a message naming them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MAX_STOP_SEQUENCES = 16
# Stop strings are matched against every decoded piece on the engine thread: bounded, so no request can
# buy seconds of its CPU (16 stops of 200,000 characters did).
MAX_STOP_LENGTH = 256
MAX_STOP_TOTAL = 1024
# OpenAI takes seeds as 64-bit integers; accept both the signed and the unsigned range.
MIN_SEED = -(2**63)
MAX_SEED = 2**64 - 1


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); tokenizers cannot encode them and would fail deep in the engine.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from exc
    return value


Text = Annotated[str, AfterValidator(_utf8)]


def check_stops(value: str | list[str] | None) -> str | list[str] | None:
    stops = [value] if isinstance(value, str) else list(value or [])
    if any(len(stop) > MAX_STOP_LENGTH for stop in stops):
        raise ValueError(f"a stop sequence may have at most {MAX_STOP_LENGTH} characters")
    if sum(len(stop) for stop in stops) > MAX_STOP_TOTAL:
        raise ValueError(f"the stop sequences may have at most {MAX_STOP_TOTAL} characters in all")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(StrictModel):
    type: Literal["text"]
    text: Text


class ImageUrl(StrictModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(StrictModel):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCallFunction(StrictModel):
    name: Text
    arguments: Text


class ToolCall(StrictModel):
    id: Text
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None
    # Carried to cloud upstreams (translated for Anthropic); the local engine refuses them.
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Text | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class StreamOptions(StrictModel):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]


class SamplingFields(StrictModel):
    model: Text = Field(min_length=1, max_length=200)
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
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = Field(default=None, max_length=256)
    n: int | None = Field(default=None, ge=1, le=128)
    logprobs: Any = None
    top_logprobs: int | None = None

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

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class CompletionRequest(SamplingFields):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


# The Anthropic Messages API (POST /v1/messages).
ANTHROPIC_BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result"})


def _blocks(value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(value, list):
        for block in value:
            if block.get("type") not in ANTHROPIC_BLOCK_TYPES:
                raise ValueError(f"content block type {block.get('type')!r} is not supported")
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise ValueError("a text block needs a 'text' string")
            if isinstance(block.get("text"), str):
                _utf8(block["text"])
    return value


Blocks = Annotated[Text | list[dict[str, Any]], AfterValidator(_blocks)]


class AnthropicMessage(StrictModel):
    role: Literal["user", "assistant"]
    content: Blocks


class AnthropicCountTokensRequest(StrictModel):
    model: Text = Field(min_length=1, max_length=200)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: Blocks | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


class AnthropicMessagesRequest(AnthropicCountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[Text] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)

    @field_validator("stop_sequences")
    @classmethod
    def _stops(cls, value: list[str] | None) -> list[str] | None:
        check_stops(value)
        return value

    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None


# One request embeds at most this many inputs, as OpenAI's endpoint allows.
MAX_EMBEDDING_INPUTS = 2048


class EmbeddingsRequest(StrictModel):
    model: Text = Field(min_length=1, max_length=200)
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
