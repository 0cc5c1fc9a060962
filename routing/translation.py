"""OpenAI chat completions ⇄ Anthropic messages: requests, responses, stream events and errors.

Plain functions over JSON-shaped dicts (no Django), so each direction is tested alone.
Temperature: OpenAI takes 0-2, Anthropic 0-1 with the same meaning at 0 and 1, so values
above 1 are clamped to 1 going to Anthropic and pass unchanged the other way.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS

Json = dict[str, Any]

OPENAI_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ANTHROPIC_TO_OPENAI_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DATA_URL = re.compile(r"^data:(?P<media>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


# Requests.
def _openai_part_to_anthropic(part: Json) -> Json:
    if part.get("type") == "image_url":
        url = part["image_url"]["url"]
        match = DATA_URL.match(url)
        if match:
            source = {"type": "base64", "media_type": match["media"], "data": match["data"]}
        else:
            source = {"type": "url", "url": url}
        return {"type": "image", "source": source}
    return {"type": "text", "text": part.get("text", "")}


def _openai_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def openai_request_to_anthropic(body: Json, *, model: str) -> Json:
    system: list[str] = []
    messages: list[Json] = []

    def append(role: str, blocks: list[Json]) -> None:
        # Anthropic merges consecutive same-role turns; doing it here keeps tool results together.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in body.get("messages", []):
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.append(_openai_text(content))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _openai_text(content),
            }
            append("user", [block])
        else:
            blocks = (
                [{"type": "text", "text": content}]
                if isinstance(content, str)
                else [_openai_part_to_anthropic(part) for part in content or []]
            )
            blocks = [block for block in blocks if block["type"] != "text" or block["text"]]
            for call in message.get("tool_calls") or []:
                function = call.get("function", {})
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {"_raw": function.get("arguments")}
                blocks.append(
                    {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}
                )
            append("assistant" if role == "assistant" else "user", blocks)

    out: Json = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or ANTHROPIC_DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = "\n\n".join(system)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)
    for name in ("top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                "input_schema": tool["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in body["tools"]
            if tool.get("type") == "function"
        ]
    choice = body.get("tool_choice")
    if choice == "auto":
        out["tool_choice"] = {"type": "auto"}
    elif choice == "required":
        out["tool_choice"] = {"type": "any"}
    elif choice == "none":
        out["tool_choice"] = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    return out


def _anthropic_blocks(content: Any) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _anthropic_text(content: Any) -> str:
    return "".join(block.get("text", "") for block in _anthropic_blocks(content) if block.get("type") == "text")


def anthropic_request_to_openai(body: Json, *, model: str) -> Json:
    messages: list[Json] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _anthropic_text(system)})
    for message in body.get("messages", []):
        role = message.get("role")
        parts: list[Json] = []
        tool_calls: list[Json] = []
        for block in _anthropic_blocks(message.get("content")):
            kind = block.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "image":
                source = block.get("source", {})
                url = source.get("url") or f"data:{source.get('media_type')};base64,{source.get('data')}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input", {}))
                tool_calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
            elif kind == "tool_result":
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _anthropic_text(block.get("content")),
                    }
                )
        if not parts and not tool_calls:
            continue
        only_text = all(part["type"] == "text" for part in parts)
        content: Any = "".join(part["text"] for part in parts) if only_text else parts
        out_message: Json = {"role": role, "content": content}
        if tool_calls:
            out_message["tool_calls"] = tool_calls
            if not parts:
                out_message["content"] = None
        messages.append(out_message)

    out: Json = {"model": model, "messages": messages, "max_tokens": body["max_tokens"]}
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for tool in body["tools"]
        ]
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "auto":
        out["tool_choice"] = "auto"
    elif choice.get("type") == "any":
        out["tool_choice"] = "required"
    elif choice.get("type") == "none":
        out["tool_choice"] = "none"
    elif choice.get("type") == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    return out


# Responses.
def openai_usage(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def anthropic_usage_counts(usage: Json) -> tuple[int, int, int]:
    """(prompt, completion, cached) from an Anthropic usage object; cache reads and writes are prompt tokens."""
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    return prompt, usage.get("output_tokens") or 0, cached


def openai_usage_counts(usage: Json | None) -> tuple[int, int, int]:
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached


def anthropic_response_to_openai(body: Json, *, model: str, created: int) -> Json:
    text = ""
    tool_calls: list[Json] = []
    for block in body.get("content", []):
        if block.get("type") == "text":
            text += block.get("text", "")
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input", {}))
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    message: Json = {"role": "assistant", "content": text or (None if tool_calls else ""), "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    prompt, completion, cached = anthropic_usage_counts(body.get("usage") or {})
    return {
        "id": body.get("id") or new_message_id(),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": ANTHROPIC_TO_OPENAI_STOP.get(body.get("stop_reason") or "end_turn", "stop"),
            }
        ],
        "usage": openai_usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached),
    }


def openai_response_to_anthropic(body: Json, *, model: str) -> Json:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"_raw": function.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    prompt, completion, cached = openai_usage_counts(body.get("usage"))
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": OPENAI_TO_ANTHROPIC_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": prompt - cached, "output_tokens": completion, "cache_read_input_tokens": cached},
    }


# Streams.
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


# Errors.
def anthropic_error_type(status: int) -> str:
    return ANTHROPIC_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error_body(*, status: int, message: str) -> Json:
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def upstream_error_message(body: Any) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an OpenAI- or Anthropic-shaped error body, whichever it is."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return (
                str(error.get("message") or "upstream error"),
                error.get("code") or error.get("type"),
                error.get("param"),
            )
        if isinstance(error, str):
            return error, None, None
    return "The upstream provider returned an error.", None, None
