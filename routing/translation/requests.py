"""OpenAI chat completions ⇄ Anthropic messages: the request bodies, each direction.

Temperature: OpenAI takes 0-2, Anthropic 0-1 with the same meaning at 0 and 1, so values
above 1 are clamped to 1 going to Anthropic and pass unchanged the other way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS

Json = dict[str, Any]

DATA_URL = re.compile(r"^data:(?P<media>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


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
    if body.get("parallel_tool_calls") is False and body.get("tools"):
        out["tool_choice"] = {**out.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
    output_format = _anthropic_output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    return out


def _anthropic_output_format(response_format: Any) -> Json | None:
    """OpenAI's structured output as Anthropic's ``output_config.format`` (a JSON schema; any object for
    ``json_object``, which Anthropic has no name for)."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return {"type": "json_schema", "schema": schema}
    if response_format.get("type") == "json_object":
        return {"type": "json_schema", "schema": {"type": "object"}}
    return None


def _anthropic_blocks(content: Any) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _anthropic_text(content: Any) -> str:
    return "".join(block.get("text", "") for block in _anthropic_blocks(content) if block.get("type") == "text")


def anthropic_request_to_openai(body: Json, *, model: str) -> Json:
    messages: list[Json] = []
    system = body.get("system")
    if system:
        # System blocks are joined with a newline, as Anthropic joins them (and as a local model sees them).
        blocks = _anthropic_blocks(system)
        text = "\n".join(block.get("text", "") for block in blocks if block.get("type") == "text")
        messages.append({"role": "system", "content": text})
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
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    output_format = (body.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        schema = output_format.get("schema") or {"type": "object"}
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    return out
