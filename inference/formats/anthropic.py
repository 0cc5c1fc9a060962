"""Anthropic's Messages shapes: a message body, or its typed event stream, from the engine's events."""

from __future__ import annotations

import json
from typing import Any

from inference.engine.types import AcceptedEvent, EngineEvent, FinishEvent
from inference.errors import OpenAIError
from inference.formats.base import Renderer, text_and_finish
from routing.translation.errors import anthropic_error_body
from routing.translation.responses import new_message_id

STOP_REASONS = {"length": "max_tokens", "stop": "end_turn", "cancelled": "end_turn"}


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def anthropic_usage(*, prompt: int, completion: int, cached: int) -> dict[str, int]:
    # Anthropic counts cache reads apart from the input tokens they save.
    return {"input_tokens": prompt - cached, "output_tokens": completion, "cache_read_input_tokens": cached}


class MessagesRenderer(Renderer):
    def __init__(self, *, model: str) -> None:
        self.model = model
        self.id = new_message_id()
        self.block_open = False
        self.prompt_tokens = self.cached_tokens = 0

    def message(self, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def stream_start(self, accepted: AcceptedEvent) -> bytes:
        self.prompt_tokens, self.cached_tokens = accepted["prompt_tokens"], accepted["cached_tokens"]
        usage = anthropic_usage(prompt=self.prompt_tokens, completion=0, cached=self.cached_tokens)
        return sse_event("message_start", {"type": "message_start", "message": self.message([], None, usage)})

    def stream_delta(self, text: str) -> bytes:
        frames = b""
        if not self.block_open:
            self.block_open = True
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            frames += sse_event("content_block_start", block)
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return frames + sse_event("content_block_delta", delta)

    def stream_finish(self, finish: FinishEvent) -> bytes:
        frames = self.stream_delta(finish["text"]) if finish["text"] else b""
        if self.block_open:
            frames += sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        usage = anthropic_usage(
            prompt=finish["prompt_tokens"], completion=finish["completion_tokens"], cached=finish["cached_tokens"]
        )
        delta = {"stop_reason": STOP_REASONS[finish["finish_reason"]], "stop_sequence": None}
        frames += sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return frames + sse_event("message_stop", {"type": "message_stop"})

    def stream_error(self, error: OpenAIError) -> bytes:
        return sse_event("error", anthropic_error_body(status=error.status, message=str(error)))

    def heartbeat(self) -> bytes:
        return sse_event("ping", {"type": "ping"})

    def body(self, events: list[EngineEvent]) -> dict[str, Any]:
        text, finish = text_and_finish(events)
        content = [{"type": "text", "text": text}] if text else []
        usage = anthropic_usage(
            prompt=finish["prompt_tokens"], completion=finish["completion_tokens"], cached=finish["cached_tokens"]
        )
        return self.message(content, STOP_REASONS[finish["finish_reason"]], usage)
