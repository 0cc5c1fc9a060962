"""Anthropic's Messages API bodies (/v1/messages, /v1/messages/count_tokens), as the SDK and Claude Code send them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from inference.schemas.common import ClientModel, Text, _utf8
from inference.schemas.openai import MAX_STOP_SEQUENCES, MODEL_NAME, check_stops

# Blocks a local model can take (images on vision models); "thinking" ones in assistant turns are dropped.
BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document"})
SERVER_TOOL_BLOCKS = ("server_tool_use", "web_search_tool_result", "code_execution", "mcp_", "container_upload")


class Block(ClientModel):
    """A content block; its fields vary by type (checked where the conversation is built)."""

    # thinking / redacted_thinking blocks of earlier turns are not shown to the model again.
    IGNORED = frozenset({"cache_control", "citations", "thinking", "signature", "data"})
    # What inference.conversations reads of text, document, image, tool_use and tool_result blocks.
    READ = frozenset({"text", "source", "id", "name", "input", "tool_use_id", "content"})
    type: str

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.startswith(SERVER_TOOL_BLOCKS):
            raise ValueError(f"content block type {value!r} needs Anthropic's servers; it is not supported here")
        if value not in BLOCK_TYPES:
            raise ValueError(f"content block type {value!r} is not supported")
        return value

    def text_of(self) -> str:
        value = (self.model_extra or {}).get("text")
        return _utf8(value) if isinstance(value, str) else ""


class AnthropicMessage(ClientModel):
    # A system turn inside the conversation (Claude Code sends one after the first user turn).
    role: Literal["user", "assistant", "system"]
    content: Text | list[Block]


class AnthropicTool(ClientModel):
    IGNORED = frozenset({"cache_control", "strict", "input_examples", "defer_loading", "eager_input_streaming"})
    name: Any = None
    description: Any = None
    input_schema: Any = None
    type: str | None = None  # absent or "custom": a client tool; Anthropic's own tools are refused by type


class ToolChoice(ClientModel):
    type: Literal["auto", "any", "tool", "none"]
    name: Text | None = None
    disable_parallel_tool_use: bool = False


class OutputFormat(ClientModel):
    type: Literal["json_schema"]
    schema_: Any = Field(default=None, alias="schema")


class OutputConfig(ClientModel):
    format: OutputFormat | None = None
    effort: Text | None = None  # how hard to think: the template gets it as reasoning_effort


class ThinkingConfig(ClientModel):
    """Extended thinking: ``enabled`` with a budget, ``adaptive`` (the model decides), or ``disabled``."""

    IGNORED = frozenset({"display"})
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)


class AnthropicCountTokensRequest(ClientModel):
    IGNORED = frozenset(
        {"metadata", "cache_control", "context_management", "service_tier", "speed", "inference_geo", "container"}
    )
    REFUSED: ClassVar[dict[str, str]] = {
        "mcp_servers": "MCP servers are called by Anthropic's API; MLX Hub does not connect to them.",
    }
    model: Text = MODEL_NAME
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: Text | list[Block] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    mcp_servers: Any = None


class AnthropicMessagesRequest(AnthropicCountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[Text] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool | None = False

    @field_validator("stop_sequences")
    @classmethod
    def _stops(cls, value: list[str] | None) -> list[str] | None:
        check_stops(value)
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: bool | None) -> bool:
        return bool(value)
