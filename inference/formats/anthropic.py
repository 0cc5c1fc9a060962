"""Anthropic's Messages shapes: a message body, or its typed event stream, from the engine's events."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from inference.engine.types import AcceptedEvent, EngineEvent, FinishEvent, ToolArgumentsEvent, ToolCallEvent
from inference.errors import OpenAIError
from inference.formats.base import Renderer, text_and_finish, tool_calls
from mlxhub.logging import request_id_var
from routing.translation.errors import anthropic_error_body
from routing.translation.responses import new_message_id

STOP_REASONS = {"length": "max_tokens", "stop": "end_turn", "cancelled": "end_turn", "tool_calls": "tool_use"}


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def anthropic_usage(*, prompt: int, completion: int, cached: int) -> dict[str, int]:
    # Anthropic counts cache reads apart from the input tokens they save.
    return {"input_tokens": prompt - cached, "output_tokens": completion, "cache_read_input_tokens": cached}


def thinking_signature(thinking: str) -> str:
    """Anthropic's clients keep a thinking block's signature and send it back; nothing checks it here (earlier
    turns' thinking is not shown to the model again), so it is a digest of the text, not a secret."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def stop_reason(finish: FinishEvent) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence): a stop string that ended the output is named, as Anthropic does."""
    sequence = finish.get("stop_sequence")
    if finish["finish_reason"] == "stop" and sequence is not None:
        return "stop_sequence", sequence
    return STOP_REASONS[finish["finish_reason"]], None


def tool_use_id(call_id: str) -> str:
    """Anthropic's clients know tool uses by a ``toolu_`` id; the engine's calls are ``call_…``."""
    return "toolu_" + call_id.removeprefix("call_")


def tool_input(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:  # a call cut short by max_tokens: what there is, as the model wrote it
        return {"_raw": arguments}


class MessagesRenderer(Renderer):
    def __init__(self, *, model: str, thinking: bool = False) -> None:
        self.model = model
        self.thinking = thinking  # thinking blocks only when the request enabled them
        self.thought = ""  # the open thinking block's text, for its signature
        self.id = new_message_id()
        self.block = -1  # the index of the open content block, -1 before the first
        self.block_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}  # the engine's call index -> its block index

    def message(
        self,
        content: list[dict[str, Any]],
        stop_reason: str | None,
        usage: dict[str, int],
        stop_sequence: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def stream_start(self, accepted: AcceptedEvent) -> bytes:
        usage = anthropic_usage(prompt=accepted["prompt_tokens"], completion=0, cached=accepted["cached_tokens"])
        return sse_event("message_start", {"type": "message_start", "message": self.message([], None, usage)})

    def _close_block(self) -> bytes:
        if self.block_kind is None:
            return b""
        frames = b""
        if self.block_kind == "thinking":  # the signature comes just before the block's stop, as Anthropic's does
            delta = {"type": "signature_delta", "signature": thinking_signature(self.thought)}
            frames = sse_event(
                "content_block_delta", {"type": "content_block_delta", "index": self.block, "delta": delta}
            )
            self.thought = ""
        self.block_kind = None
        return frames + sse_event("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _open_block(self, block: dict[str, Any]) -> bytes:
        frames = self._close_block()
        self.block += 1
        self.block_kind = block["type"]
        start = {"type": "content_block_start", "index": self.block, "content_block": block}
        return frames + sse_event("content_block_start", start)

    def stream_delta(self, text: str) -> bytes:
        frames = b"" if self.block_kind == "text" else self._open_block({"type": "text", "text": ""})
        delta = {"type": "content_block_delta", "index": self.block, "delta": {"type": "text_delta", "text": text}}
        return frames + sse_event("content_block_delta", delta)

    def stream_reasoning(self, text: str, choice: int = 0) -> bytes:
        if not self.thinking:
            return b""
        block = {"type": "thinking", "thinking": "", "signature": ""}
        frames = b"" if self.block_kind == "thinking" else self._open_block(block)
        self.thought += text
        delta = {
            "type": "content_block_delta",
            "index": self.block,
            "delta": {"type": "thinking_delta", "thinking": text},
        }
        return frames + sse_event("content_block_delta", delta)

    def stream_tool_call(self, event: ToolCallEvent) -> bytes:
        block = {"type": "tool_use", "id": tool_use_id(event["id"]), "name": event["name"], "input": {}}
        frames = self._open_block(block)
        self.tool_blocks[event["index"]] = self.block
        return frames

    def stream_tool_arguments(self, event: ToolArgumentsEvent) -> bytes:
        delta = {"type": "input_json_delta", "partial_json": event["arguments"]}
        index = self.tool_blocks[event["index"]]
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def stream_finish(self, finish: FinishEvent) -> bytes:
        frames = self.stream_delta(finish["text"]) if finish["text"] else b""
        frames += self._close_block()
        usage = anthropic_usage(
            prompt=finish["prompt_tokens"], completion=finish["completion_tokens"], cached=finish["cached_tokens"]
        )
        reason, sequence = stop_reason(finish)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        frames += sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return frames + sse_event("message_stop", {"type": "message_stop"})

    def stream_error(self, error: OpenAIError) -> bytes:
        request_id = request_id_var.get()  # "-" outside a request's context
        body = anthropic_error_body(
            status=error.status, message=str(error), request_id=None if request_id == "-" else request_id
        )
        return sse_event("error", body)

    def heartbeat(self) -> bytes:
        return sse_event("ping", {"type": "ping"})

    def body(self, events: list[EngineEvent]) -> dict[str, Any]:
        _, finish = text_and_finish(events)
        # The blocks in the order the stream opens them: text runs, then each call where it began.
        content: list[dict[str, Any]] = []
        calls = {call.id: call for call in tool_calls(events)}
        for event in events:
            if event["type"] == "reasoning" and self.thinking:
                if content and content[-1]["type"] == "thinking":
                    content[-1]["thinking"] += event["text"]
                else:
                    content.append({"type": "thinking", "thinking": event["text"], "signature": ""})
            elif event["type"] in ("delta", "finish") and event["text"]:
                if content and content[-1]["type"] == "text":
                    content[-1]["text"] += event["text"]
                else:
                    content.append({"type": "text", "text": event["text"]})
            elif event["type"] == "tool_call":
                call = calls[event["id"]]
                content.append(
                    {
                        "type": "tool_use",
                        "id": tool_use_id(call.id),
                        "name": call.name,
                        "input": tool_input(call.arguments),
                    }
                )
        usage = anthropic_usage(
            prompt=finish["prompt_tokens"], completion=finish["completion_tokens"], cached=finish["cached_tokens"]
        )
        for block in content:
            if block["type"] == "thinking":
                block["signature"] = thinking_signature(block["thinking"])
        reason, sequence = stop_reason(finish)
        return self.message(content, reason, usage, sequence)
