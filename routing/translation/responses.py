"""Non-streamed bodies each direction, stop reasons and usage counts."""

from __future__ import annotations

import json
import uuid
from typing import Any

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


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


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
