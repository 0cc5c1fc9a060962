"""Stream translators: OpenAI chat chunks ⇄ Anthropic message events, one object per stream."""

from __future__ import annotations

import uuid

from routing.translation.responses import (
    ANTHROPIC_TO_OPENAI_STOP,
    OPENAI_TO_ANTHROPIC_STOP,
    Json,
    anthropic_usage_counts,
    new_message_id,
    openai_usage,
    openai_usage_counts,
)


class OpenAIToAnthropicStream:
    """Feed OpenAI chat chunks; get Anthropic (event, data) pairs: message_start … message_stop."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.started = False
        self.block_index = -1
        self.block_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}
        self.stop_reason = "end_turn"
        self.usage: tuple[int, int, int] = (0, 0, 0)
        self.ended = False

    def _start(self) -> list[tuple[str, Json]]:
        if self.started:
            return []
        self.started = True
        message: Json = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[tuple[str, Json]]:
        if self.block_kind is None:
            return []
        self.block_kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.block_index})]

    def _open_block(self, block: Json) -> list[tuple[str, Json]]:
        events = self._close_block()
        self.block_index += 1
        self.block_kind = block["type"]
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": self.block_index, "content_block": block})
        )
        return events

    def feed(self, chunk: Json) -> list[tuple[str, Json]]:
        events = self._start()
        if chunk.get("usage"):
            self.usage = openai_usage_counts(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.block_kind != "text":
                    events += self._open_block({"type": "text", "text": ""})
                delta_body = {"type": "text_delta", "text": delta["content"]}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": self.block_index, "delta": delta_body},
                    )
                )
            for call in delta.get("tool_calls") or []:
                position = call.get("index", 0)
                function = call.get("function") or {}
                if position not in self.tool_blocks:
                    block = {
                        "type": "tool_use",
                        "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": function.get("name", ""),
                        "input": {},
                    }
                    events += self._open_block(block)
                    self.tool_blocks[position] = self.block_index
                if function.get("arguments"):
                    delta_body = {"type": "input_json_delta", "partial_json": function["arguments"]}
                    index = self.tool_blocks[position]
                    events.append(
                        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta_body})
                    )
            if choice.get("finish_reason"):
                self.stop_reason = OPENAI_TO_ANTHROPIC_STOP.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[tuple[str, Json]]:
        if self.ended:
            return []
        self.ended = True
        events = self._start() + self._close_block()
        prompt, completion, cached = self.usage
        usage = {"input_tokens": prompt - cached, "output_tokens": completion, "cache_read_input_tokens": cached}
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


class AnthropicToOpenAIStream:
    """Feed Anthropic (event, data) pairs; get OpenAI chat chunks (the usage chunk when asked)."""

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.tool_index: dict[int, int] = {}
        self.prompt = self.completion = self.cached = 0

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def feed(self, event: str, data: Json) -> list[Json]:
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.prompt, _, self.cached = anthropic_usage_counts(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = len(self.tool_index)
                self.tool_index[data.get("index", 0)] = position
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                position = self.tool_index.get(data.get("index", 0), 0)
                call = {"index": position, "function": {"arguments": delta.get("partial_json", "")}}
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            usage = data.get("usage") or {}
            self.completion = usage.get("output_tokens") or self.completion
            if usage.get("input_tokens"):
                self.prompt, _, self.cached = anthropic_usage_counts(usage)
            stop = (data.get("delta") or {}).get("stop_reason") or "end_turn"
            return [self._chunk({}, ANTHROPIC_TO_OPENAI_STOP.get(stop, "stop"))]
        if kind == "message_stop" and self.include_usage:
            chunk = self._chunk({})
            chunk["choices"] = []
            chunk["usage"] = openai_usage(
                prompt_tokens=self.prompt, completion_tokens=self.completion, cached_tokens=self.cached
            )
            return [chunk]
        return []
