"""The Responses API's request body (POST /v1/responses), as the official SDK, Codex and the agent frameworks send it.

Items and tools are validated loosely here (their type is a string) and strictly where they are used
(``inference.responses_requests``), so a refusal names the item or tool it is about: ``input[3].type``,
``tools[1].type``, ``input[0].content[2].file_id``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from inference.errors import OpenAIError
from inference.schemas.common import ClientModel, Text
from inference.schemas.openai import MODEL_NAME

BACKGROUND = "Background responses are not supported; send the request and wait for its answer (or stream it)."
# ``include`` values that ask for output MLX Hub cannot give; every other value changes nothing here.
REFUSED_INCLUDES = {"message.output_text.logprobs": "logprobs are not supported yet."}


class InputPart(ClientModel):
    """A content part: ``input_text``, ``input_image``, ``output_text``, ``refusal`` (others refused by type)."""

    # Echoed from the SDK's own output objects, or hints that change nothing here.
    IGNORED = frozenset({"detail", "annotations", "logprobs", "cache_control", "prompt_cache_breakpoint"})
    type: str
    text: Text | None = None
    refusal: Text | None = None
    image_url: str | None = None
    file_id: str | None = None


_OUTPUT: TypeAdapter[Any] = TypeAdapter(Text | list[InputPart])


class InputItem(ClientModel):
    """An input item: a message (with or without ``type``), ``function_call``, ``function_call_output``,
    ``reasoning`` (dropped), ``item_reference`` (from the store); other types are refused by type."""

    # Items echoed from an earlier answer carry their id, status and phase; Codex sends ids on its own
    # messages. A reasoning item's summary and encrypted content are not shown to a local model again.
    IGNORED = frozenset({"status", "phase", "caller", "async", "summary", "encrypted_content"})
    type: str | None = None
    id: str | None = Field(default=None, max_length=200)
    role: str | None = None
    content: Text | list[InputPart] | None = None
    call_id: Text | None = None
    name: Text | None = None
    arguments: Text | None = None
    namespace: Text | None = None
    # Text or input_text parts for a function_call_output; other item types (refused by type) put objects here.
    output: Any = None

    def output_parts(self, param: str) -> str | list[InputPart]:
        """A function_call_output's output: its text, or its parts (a 400 naming ``param`` otherwise)."""
        if self.output is None:
            return ""
        try:
            return _OUTPUT.validate_python(self.output)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise OpenAIError("A function's output is a string or a list of input_text parts.", param=param) from exc

    @property
    def kind(self) -> str | None:
        """The item's type; an item with a role and no type is a message (the Agents SDK sends those)."""
        if self.type is None and self.role is not None:
            return "message"
        return self.type


class ResponsesTool(ClientModel):
    """A tool: ``function``, a ``namespace`` of functions, or a hosted tool (by its type)."""

    # ``strict``: every enforced call is valid for its schema, strict or not; the rest are OpenAI's hints
    # about deferred loading and callers.
    IGNORED = frozenset({"strict", "defer_loading", "allowed_callers", "output_schema", "cache_control"})
    type: str
    name: Any = None
    description: Any = None
    parameters: Any = None
    tools: list[ResponsesTool] | None = None  # a namespace's functions


class TextFormat(ClientModel):
    IGNORED = frozenset({"strict", "description"})  # enforced either way; what cannot be enforced is a 400
    type: Literal["text", "json_object", "json_schema"]
    name: Text | None = None
    schema_: Any = Field(default=None, alias="schema")


class ReasoningConfig(ClientModel):
    # Summaries are OpenAI's models' own: the reasoning item carries the full text instead.
    IGNORED = frozenset({"summary", "generate_summary"})
    effort: Text | None = None  # to a thinking model's template as reasoning_effort; "none" turns it off


class TextConfig(ClientModel):
    IGNORED = frozenset({"verbosity"})  # a length hint to OpenAI's models
    format: TextFormat | None = None


class ResponsesRequest(ClientModel):
    # No effect on the output here (docs/responses.md): caching and routing hints, who the user is,
    # what to include of hosted tools' output, reasoning summaries (issue 15), Codex's own metadata.
    IGNORED = frozenset(
        {
            "user",
            "safety_identifier",
            "prompt_cache_key",
            "prompt_cache_options",
            "prompt_cache_retention",
            "service_tier",
            "stream_options",
            "context_management",
            "access_programs",
            "image",
            "client_metadata",
            "truncation",
            "background_options",  # options of a background response, which is refused by itself
        }
    )
    REFUSED: ClassVar[dict[str, str]] = {
        "background": BACKGROUND,
        "conversation": "Conversations are not supported; send the history in input, or chain responses with "
        "previous_response_id (MLXHUB_RESPONSES_STORE=1).",
        "prompt": "Stored prompt templates are not supported; send the instructions and input.",
        "moderation": "Moderation is not supported.",
    }
    model: Text = MODEL_NAME
    input: Text | list[InputItem] | None = None
    instructions: Text | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    tools: list[ResponsesTool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    stream: bool | None = False
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None
    include: list[str] | None = None
    user: Text | None = Field(default=None, max_length=256)
    background: Any = None
    conversation: Any = None
    prompt: Any = None
    moderation: Any = None
    top_logprobs: int | None = None
    reasoning: ReasoningConfig | None = None

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: bool | None) -> bool:
        return bool(value)

    def refuse_background(self) -> None:
        """Refused whatever serves the request: a background response is polled from a store MLX Hub
        does not keep for them."""
        if self.background:
            raise OpenAIError(BACKGROUND, param="background", code="unsupported_parameter")

    def refuse_fields(self, param: str = "") -> None:
        super().refuse_fields(param)
        if self.top_logprobs:  # 0 asks for none (the SDK's own response objects say 0)
            raise OpenAIError("logprobs are not supported yet.", param="top_logprobs", code="unsupported_parameter")
        for value in self.include or []:
            if value in REFUSED_INCLUDES:
                raise OpenAIError(REFUSED_INCLUDES[value], param="include", code="unsupported_parameter")

    def input_items(self) -> list[InputItem]:
        """The input as items: a string is one user message."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [InputItem(type="message", role="user", content=self.input)]
        return list(self.input)
