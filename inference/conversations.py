"""Each protocol's conversation as the engine renders it: OpenAI-form messages, tools and tool calls included.

The engine takes one shape (what HF chat templates take): ``{"role", "content"}`` with ``tool_calls``
on assistant turns and ``tool`` turns carrying ``tool_call_id``; a vision model's user turns are text
and image parts in order. Images are listed apart (url, param), to be fetched after the reservation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from inference.errors import OpenAIError
from inference.schemas.anthropic import AnthropicCountTokensRequest, Block
from inference.schemas.openai import ChatCompletionRequest, ChatMessage, ImagePart, TextPart


@dataclass
class Conversation:
    messages: list[dict[str, Any]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (url, param), in the order of their parts
    tool_names: dict[str, str] = field(default_factory=dict)  # call id -> function name

    def add_system(self, text: str) -> None:
        """System text anywhere in a conversation joins the leading system message: most chat templates
        accept a system turn only first ("System role not supported" anywhere else)."""
        if not text:
            return
        if self.messages and self.messages[0]["role"] == "system":
            self.messages[0]["content"] = f"{self.messages[0]['content']}\n\n{text}"
        else:
            self.messages.insert(0, {"role": "system", "content": text})

    def add_calls(self, text: str, calls: list[tuple[str, str, str]]) -> None:
        turn: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            turn["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in calls
            ]
            self.tool_names.update((call_id, name) for call_id, name, _ in calls)
        self.messages.append(turn)

    def add_result(self, call_id: str, text: str, name: str | None = None) -> None:
        turn = {"role": "tool", "tool_call_id": call_id, "content": text}
        # Some templates show the tool's name with its answer; the call it answers says which.
        if name or call_id in self.tool_names:
            turn["name"] = name or self.tool_names[call_id]
        self.messages.append(turn)

    def with_system_prompt(self, system_prompt: str) -> list[dict[str, Any]]:
        """The messages, with the profile's system prompt first when the request has none of its own."""
        if system_prompt and not any(message["role"] == "system" for message in self.messages):
            self.messages.insert(0, {"role": "system", "content": system_prompt})
        return self.messages


# ---- OpenAI chat --------------------------------------------------------------------------------------------------


def _chat_user(conversation: Conversation, message: ChatMessage, index: int, *, vision: bool) -> None:
    if not isinstance(message.content, list) or not any(isinstance(p, ImagePart) for p in message.content):
        conversation.messages.append({"role": "user", "content": message.text()})
        return
    parts: list[dict[str, Any]] = []
    for part_index, part in enumerate(message.content):
        param = f"messages[{index}].content[{part_index}]"
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if not vision:
                raise OpenAIError("Image inputs are not supported by this model.", param=param)
            parts.append({"type": "image"})
            conversation.images.append((part.image_url.url, f"{param}.image_url.url"))
    conversation.messages.append({"role": "user", "content": parts})


def chat_conversation(payload: ChatCompletionRequest, *, vision: bool) -> Conversation:
    conversation = Conversation()
    for index, message in enumerate(payload.messages):
        has_images = isinstance(message.content, list) and any(isinstance(p, ImagePart) for p in message.content)
        if message.role != "user" and has_images:
            raise OpenAIError("Images are accepted in user messages only.", param=f"messages[{index}].content")
        if message.role in ("system", "developer"):
            conversation.add_system(message.text())
        elif message.role == "user":
            _chat_user(conversation, message, index, vision=vision)
        elif message.role == "assistant":
            calls = [(call.id, call.function.name, call.function.arguments) for call in message.tool_calls or []]
            if message.function_call is not None:  # the deprecated single call
                calls.append((f"call_{index}", message.function_call.name, message.function_call.arguments))
            conversation.add_calls(message.text(), calls)
        else:  # a tool's answer, or the deprecated function role (named by its function)
            call_id = message.tool_call_id or (message.name if message.role == "function" else None)
            if not call_id:
                raise OpenAIError("A tool message needs its tool_call_id.", param=f"messages[{index}].tool_call_id")
            conversation.add_result(call_id, message.text(), message.name)
    return conversation


# ---- Anthropic messages ----------------------------------------------------------------------------------------


def _blocks(content: str | list[Block] | None) -> list[Block]:
    if content is None:
        return []
    return [Block.model_validate({"type": "text", "text": content})] if isinstance(content, str) else list(content)


def _block_text(block: Block, param: str) -> str:
    extra = block.model_extra or {}
    if block.type == "text":
        return block.text_of()
    if block.type == "document":
        source = extra.get("source") or {}
        if isinstance(source, dict) and source.get("type") == "text" and isinstance(source.get("data"), str):
            return str(source["data"])
        raise OpenAIError("Only plain-text documents are supported; send other files as text.", param=param)
    return ""


def _result_text(block: Block, param: str) -> str:
    content = (block.model_extra or {}).get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise OpenAIError("A tool_result's content is text or a list of text blocks.", param=f"{param}.content")
    pieces = []
    for index, item in enumerate(content):
        if not isinstance(item, dict) or item.get("type") != "text" or not isinstance(item.get("text"), str):
            raise OpenAIError("A tool_result's blocks must be text blocks.", param=f"{param}.content[{index}]")
        pieces.append(item["text"])
    return "\n".join(pieces)


def _image_url(block: Block) -> str:
    source = (block.model_extra or {}).get("source") or {}
    if not isinstance(source, dict):
        return ""
    return str(source.get("url") or f"data:{source.get('media_type')};base64,{source.get('data')}")


def anthropic_conversation(payload: AnthropicCountTokensRequest, *, vision: bool) -> Conversation:
    conversation = Conversation()
    system = "\n".join(_block_text(block, f"system[{i}]") for i, block in enumerate(_blocks(payload.system)))
    conversation.add_system(system)
    for index, message in enumerate(payload.messages):
        texts: list[str] = []
        parts: list[dict[str, Any]] = []
        calls: list[tuple[str, str, str]] = []
        for block_index, block in enumerate(_blocks(message.content)):
            param = f"messages[{index}].content[{block_index}]"
            extra = block.model_extra or {}
            if block.type in ("text", "document"):
                text = _block_text(block, param)
                texts.append(text)
                parts.append({"type": "text", "text": text})
            elif block.type == "image":
                if not vision or message.role != "user":
                    raise OpenAIError("Image inputs are not supported by this model.", param=param)
                parts.append({"type": "image"})
                conversation.images.append((_image_url(block), f"{param}.source"))
            elif block.type == "tool_use":
                arguments = json.dumps(extra.get("input") or {}, separators=(", ", ": "))
                calls.append(
                    (str(extra.get("id") or f"toolu_{index}_{block_index}"), str(extra.get("name")), arguments)
                )
            elif block.type == "tool_result":
                conversation.add_result(str(extra.get("tool_use_id") or ""), _result_text(block, param))
            # thinking and redacted_thinking blocks of earlier turns are not shown to the model again
        text = "\n".join(texts)
        if message.role == "system":
            conversation.add_system(text)
        elif message.role == "assistant":
            conversation.add_calls(text, calls)
        elif any(part["type"] == "image" for part in parts):
            conversation.messages.append({"role": "user", "content": parts})
        elif texts or not any(turn["role"] == "tool" for turn in conversation.messages[-1:]):
            conversation.messages.append({"role": "user", "content": text})
    return conversation
