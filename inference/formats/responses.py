"""The Responses API's shapes from the engine's events: a typed event stream, or the final response object.

The events themselves are made in one place, ``routing.translation.responses_api.ResponsesBuilder``,
which cloud answers drive too; this renderer feeds it the engine's events.
"""

from __future__ import annotations

import json
from typing import Any

from inference.constants import SSE_HEARTBEAT
from inference.engine.types import AcceptedEvent, EngineEvent, FinishEvent, ToolArgumentsEvent, ToolCallEvent
from inference.errors import OpenAIError
from inference.formats.base import Renderer
from inference.schemas.responses import ResponsesRequest
from routing.translation.responses_api import ResponsesBuilder, responses_usage

Json = dict[str, Any]


def sse_frame(event: Json) -> bytes:
    """One Responses event: the ``event:`` line names its type, as OpenAI's stream does."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def sse_frames(events: list[Json]) -> bytes:
    return b"".join(sse_frame(event) for event in events)


def response_envelope(payload: ResponsesRequest, *, store: bool) -> Json:
    """What every response object echoes of its request (OpenAI's required fields, and ours)."""
    text_format = payload.text.format if payload.text is not None and payload.text.format is not None else None
    return {
        "model": payload.model,
        "instructions": payload.instructions,
        "metadata": payload.metadata or {},
        "parallel_tool_calls": payload.parallel_tool_calls is not False,
        "temperature": payload.temperature if payload.temperature is not None else 1.0,
        "top_p": payload.top_p if payload.top_p is not None else 1.0,
        "tool_choice": payload.tool_choice if payload.tool_choice is not None else "auto",
        "tools": [tool.model_dump(by_alias=True, exclude_none=True) for tool in payload.tools or []],
        "max_output_tokens": payload.max_output_tokens,
        "max_tool_calls": payload.max_tool_calls,
        "previous_response_id": payload.previous_response_id,
        # What was done, not what was asked: without MLXHUB_RESPONSES_STORE nothing is stored.
        "store": store,
        "text": {
            "format": text_format.model_dump(by_alias=True, exclude_none=True) if text_format else {"type": "text"}
        },
        "truncation": "disabled",
        "reasoning": {"effort": payload.reasoning.effort if payload.reasoning else None, "summary": None},
        "user": payload.user,
    }


class ResponsesRenderer(Renderer):
    """POST /v1/responses on a local model. Streamed: created, in_progress, each item's events, then
    completed (or incomplete at max_output_tokens, or error + failed). Whole: the final response object."""

    def __init__(self, *, envelope: Json, namespaces: dict[str, str] | None = None) -> None:
        self.envelope = envelope
        self.namespaces = namespaces or {}
        self.builder = self._builder()

    def _builder(self, *, like: ResponsesBuilder | None = None) -> ResponsesBuilder:
        return ResponsesBuilder(
            envelope=self.envelope,
            namespaces=self.namespaces,
            response_id=like.id if like else None,
            created_at=like.created_at if like else None,
        )

    @property
    def final(self) -> Json | None:
        """The response object once the stream has ended (completed, incomplete or failed)."""
        return self.builder.final

    def stream_start(self, accepted: AcceptedEvent) -> bytes:
        return sse_frames(self.builder.start())

    def stream_delta(self, text: str) -> bytes:
        return sse_frames(self.builder.text(text))

    def stream_reasoning(self, text: str, choice: int = 0) -> bytes:
        return sse_frames(self.builder.reasoning(text))

    def stream_tool_call(self, event: ToolCallEvent) -> bytes:
        return sse_frames(self.builder.call(event["index"], event["id"], event["name"]))

    def stream_tool_arguments(self, event: ToolArgumentsEvent) -> bytes:
        return sse_frames(self.builder.arguments(event["index"], event["arguments"]))

    def stream_finish(self, finish: FinishEvent) -> bytes:
        return sse_frames(_finish(self.builder, finish))

    def stream_error(self, error: OpenAIError) -> bytes:
        return sse_frames(
            self.builder.fail(message=str(error), code=error.code, status=error.status, param=error.param)
        )

    def heartbeat(self) -> bytes:
        # The SDK has no heartbeat event for Responses; an SSE comment is skipped by every parser.
        return SSE_HEARTBEAT

    def body(self, events: list[EngineEvent]) -> Json:
        # The same builder steps as the stream, on a fresh builder with this response's id.
        builder = self._builder(like=self.builder)
        for event in events:
            if event["type"] == "delta":
                builder.text(event["text"])
            elif event["type"] == "reasoning":
                builder.reasoning(event["text"])
            elif event["type"] == "tool_call":
                builder.call(event["index"], event["id"], event["name"])
            elif event["type"] == "tool_arguments":
                builder.arguments(event["index"], event["arguments"])
            elif event["type"] == "finish":
                _finish(builder, event)
        assert builder.final is not None, "the events end with a finish"
        return builder.final


def _finish(builder: ResponsesBuilder, finish: FinishEvent) -> list[Json]:
    usage = responses_usage(
        prompt=finish["prompt_tokens"],
        completion=finish["completion_tokens"],
        cached=finish["cached_tokens"],
        reasoning=finish.get("reasoning_tokens", 0),
    )
    return builder.text(finish["text"]) + builder.finish(incomplete=finish["finish_reason"] == "length", usage=usage)
