"""The Responses API: its typed event sequence, and translation to and from chat completions.

``ResponsesBuilder`` is the one place the Responses event sequence is made: local answers drive it
from the engine's events (``inference.formats.responses``), cloud answers from a chat completion or its
chunks (``ChatToResponsesStream``, ``chat_response_to_responses``). ``responses_request_to_chat`` turns a
Responses request (its input already expanded and checked) into a chat-completions body for upstreams
that do not speak Responses.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from typing import Any

from routing.translation.responses import openai_usage_counts

Json = dict[str, Any]

# Item ids carry their response's id (resp_<32 hex> → msg_<32 hex><4 hex>), so an item_reference to one of
# MLX Hub's own output items finds its stored response with one lookup.
OWN_ITEM_ID = re.compile(r"^(?:msg|fc)_(?P<key>[0-9a-f]{32})[0-9a-f]{4}$")
TERMINAL_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})
# What the model cannot call (OpenAI runs these tools on its side); never offered to a chat upstream.
HOSTED_TOOL_TYPES = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "computer",
        "computer_use",
        "computer_use_preview",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
        "programmatic_tool_calling",
    }
)


# The codes a failed response's ``error.code`` may have (openai's type is a closed list); the ``error`` event
# before it carries the real code.
RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
    }
)


def response_error_code(code: str | None, status: int) -> str:
    if code in RESPONSE_ERROR_CODES:
        return str(code)
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def item_response_id(item_id: str) -> str | None:
    """The id of the response that made an output item, for MLX Hub's own item ids; None for any other."""
    match = OWN_ITEM_ID.match(item_id)
    return f"resp_{match['key']}" if match else None


def responses_usage(*, prompt: int, completion: int, cached: int, reasoning: int = 0) -> Json:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def responses_usage_counts(usage: Json | None) -> tuple[int, int, int]:
    """(prompt, completion, cached) from a Responses usage object."""
    usage = usage or {}
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    return usage.get("input_tokens") or 0, usage.get("output_tokens") or 0, cached


class ResponsesBuilder:
    """One response's events, in order, with ``sequence_number`` over the whole stream.

    Text opens a message item (``output_item.added``, ``content_part.added``), then ``output_text.delta``;
    a call opens a function_call item, then ``function_call_arguments.delta``. Opening an item closes the
    one before it (its ``.done`` events); ``finish`` closes the last one and ends ``response.completed`` or
    ``response.incomplete``; ``fail`` sends ``error`` and ``response.failed``. ``final`` is the last
    response object, the same one a whole (non-streamed) answer gives.
    """

    def __init__(
        self,
        *,
        envelope: Json,
        namespaces: dict[str, str] | None = None,
        response_id: str | None = None,
        created_at: int | None = None,
    ) -> None:
        self.envelope = envelope  # what every response object echoes of the request
        self.namespaces = namespaces or {}  # function name -> the namespace tool it came from
        self.id = response_id or new_response_id()
        self.created_at = created_at if created_at is not None else int(time.time())
        self.sequence = 0
        self.items: list[Json] = []
        self.open: int | None = None  # the output index of the item still receiving deltas
        self.calls: dict[int, int] = {}  # the producer's call index -> output index
        self.final: Json | None = None

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.id.removeprefix('resp_')[:32]}{len(self.items):04x}"

    def response(self, status: str, *, usage: Json | None = None, **details: Any) -> Json:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "completed_at": None,
            **self.envelope,
            **details,
            "output": copy.deepcopy(self.items),
            "usage": usage,
        }

    def start(self) -> list[Json]:
        snapshot = self.response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=copy.deepcopy(snapshot)),
        ]

    def _open_message(self) -> list[Json]:
        item: Json = {"id": self._item_id("msg"), "type": "message", "status": "in_progress", "role": "assistant"}
        item["content"] = []
        self.items.append(item)
        self.open = index = len(self.items) - 1
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        added = self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        item["content"].append(part)
        located = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [added, self._event("response.content_part.added", **located, part=copy.deepcopy(part))]

    def _close(self, status: str = "completed") -> list[Json]:
        if self.open is None:
            return []
        index, item = self.open, self.items[self.open]
        self.open = None
        item["status"] = status
        if item["type"] == "reasoning":
            part = item["content"][0]
            located = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events = [
                self._event("response.reasoning_text.done", **located, text=part["text"]),
                self._event("response.content_part.done", **located, part=copy.deepcopy(part)),
            ]
        elif item["type"] == "message":
            part = item["content"][0]
            located = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events = [
                self._event("response.output_text.done", **located, text=part["text"], logprobs=[]),
                self._event("response.content_part.done", **located, part=copy.deepcopy(part)),
            ]
        else:
            located = {"item_id": item["id"], "output_index": index}
            arguments = item["arguments"]
            events = [
                self._event("response.function_call_arguments.done", **located, name=item["name"], arguments=arguments)
            ]
        return [*events, self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item))]

    def text(self, delta: str) -> list[Json]:
        if not delta:
            return []
        events: list[Json] = []
        if self.open is None or self.items[self.open]["type"] != "message":
            events = self._close() + self._open_message()
        assert self.open is not None
        item = self.items[self.open]
        item["content"][0]["text"] += delta
        located = {"item_id": item["id"], "output_index": self.open, "content_index": 0}
        return [*events, self._event("response.output_text.delta", **located, delta=delta, logprobs=[])]

    def reasoning(self, delta: str) -> list[Json]:
        """A thinking model's reasoning: a ``reasoning`` item with one ``reasoning_text`` part."""
        if not delta:
            return []
        events: list[Json] = []
        if self.open is None or self.items[self.open]["type"] != "reasoning":
            events = self._close()
            item: Json = {"id": self._item_id("rs"), "type": "reasoning", "summary": [], "content": []}
            item["status"] = "in_progress"
            self.items.append(item)
            self.open = len(self.items) - 1
            part = {"type": "reasoning_text", "text": ""}
            events.append(self._event("response.output_item.added", output_index=self.open, item=copy.deepcopy(item)))
            item["content"].append(part)
            located = {"item_id": item["id"], "output_index": self.open, "content_index": 0}
            events.append(self._event("response.content_part.added", **located, part=copy.deepcopy(part)))
        item = self.items[self.open]
        item["content"][0]["text"] += delta
        located = {"item_id": item["id"], "output_index": self.open, "content_index": 0}
        return [*events, self._event("response.reasoning_text.delta", **located, delta=delta)]

    def call(self, index: int, call_id: str, name: str) -> list[Json]:
        events = self._close()
        item: Json = {
            "id": self._item_id("fc"),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        if name in self.namespaces:  # the client routes a namespaced function's call by its namespace
            item["namespace"] = self.namespaces[name]
        self.items.append(item)
        self.open = self.calls[index] = len(self.items) - 1
        return [*events, self._event("response.output_item.added", output_index=self.open, item=copy.deepcopy(item))]

    def arguments(self, index: int, delta: str) -> list[Json]:
        if not delta or index not in self.calls:
            return []
        output_index = self.calls[index]
        item = self.items[output_index]
        item["arguments"] += delta
        located = {"item_id": item["id"], "output_index": output_index}
        return [self._event("response.function_call_arguments.delta", **located, delta=delta)]

    def finish(self, *, incomplete: bool, usage: Json) -> list[Json]:
        # An answer with nothing in it still has its (empty) message, as OpenAI's does.
        events = self._open_message() if not self.items else []
        events += self._close("incomplete" if incomplete else "completed")
        if incomplete:
            final = self.response("incomplete", usage=usage, incomplete_details={"reason": "max_output_tokens"})
        else:
            final = self.response("completed", usage=usage, completed_at=int(time.time()))
        self.final = final
        return [*events, self._event(f"response.{final['status']}", response=final)]

    def fail(self, *, message: str, code: str | None, status: int = 500, param: str | None = None) -> list[Json]:
        if self.open is not None:
            self.items[self.open]["status"] = "incomplete"
            self.open = None
        error = self._event("error", code=code, message=message, param=param)
        failure = {"code": response_error_code(code, status), "message": message}
        self.final = self.response("failed", error=failure)
        return [error, self._event("response.failed", response=self.final)]


# ---- Responses request → chat completions ---------------------------------------------------------------


def _parts_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(
        str(part.get("text") if part.get("text") is not None else part.get("refusal") or "")
        for part in content
        if part.get("type") in ("input_text", "output_text", "refusal", "text")
    )


def _user_content(content: Any) -> Any:
    if not isinstance(content, list) or not any(part.get("type") == "input_image" for part in content):
        return _parts_text(content)
    parts: list[Json] = []
    for part in content:
        if part.get("type") == "input_image":
            image: Json = {"url": part.get("image_url")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif part.get("type") in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
    return parts


def _chat_messages(instructions: str | None, items: list[Json]) -> list[Json]:
    messages: list[Json] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role == "user":
                messages.append({"role": "user", "content": _user_content(item.get("content"))})
            else:  # developer turns are system turns to servers that know no developer role
                chat_role = "system" if role == "developer" else role
                messages.append({"role": chat_role, "content": _parts_text(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # the calls join the turn that made them
                last.setdefault("tool_calls", []).append(call)
                last["content"] = last["content"] or None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = _parts_text(item.get("output"))
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output})
        # reasoning items are not shown again; other types were refused before translation
    return messages


def _chat_function(tool: Json) -> Json:
    function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def chat_tools(tools: list[Json] | None) -> tuple[list[Json], dict[str, str]]:
    """Function tools in chat form (a namespace's functions under their own names), and each namespaced
    function's namespace; hosted tools are left out (the model cannot call them)."""
    functions: list[Json] = []
    namespaces: dict[str, str] = {}
    for tool in tools or []:
        if tool.get("type") == "function":
            functions.append(_chat_function(tool))
        elif tool.get("type") == "namespace":
            for nested in tool.get("tools") or []:
                if nested.get("type") == "function":
                    functions.append(_chat_function(nested))
                    namespaces[str(nested.get("name"))] = str(tool.get("name"))
    return functions, namespaces


def _chat_tool_choice(choice: Any, tools: list[Json]) -> tuple[Any, list[Json]]:
    if choice is None or isinstance(choice, str):
        return choice, tools
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}, tools
    if choice.get("type") == "allowed_tools":  # as a filter: every upstream understands a shorter list
        names = {allowed.get("name") for allowed in choice.get("tools") or []}
        return choice.get("mode", "auto"), [tool for tool in tools if tool["function"]["name"] in names]
    return None, tools


def responses_request_to_chat(body: Json, *, model: str) -> tuple[Json, dict[str, str]]:
    """A chat-completions body for a Responses request whose ``input`` is a list of items, and the
    namespaces of its functions (for the calls in the answer)."""
    out: Json = {"model": model, "messages": _chat_messages(body.get("instructions"), body.get("input") or [])}
    tools, namespaces = chat_tools(body.get("tools"))
    choice, tools = _chat_tool_choice(body.get("tool_choice"), tools)
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
        if body.get("parallel_tool_calls") is False or body.get("max_tool_calls") == 1:
            out["parallel_tool_calls"] = False
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    text_format = (body.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif text_format.get("type") == "json_schema":
        schema: Json = {"name": text_format.get("name") or "output", "schema": text_format.get("schema") or {}}
        if text_format.get("strict") is not None:
            schema["strict"] = text_format["strict"]
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # for the ledger and the answer's usage, always
    return out, namespaces


# ---- chat completions → Responses ---------------------------------------------------------------------


def chat_response_to_responses(body: Json, builder: ResponsesBuilder) -> Json:
    """The Responses object for a whole chat completion (built as its stream would be)."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    builder.text(_parts_text(message.get("content")))
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        builder.call(index, str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"), str(function.get("name")))
        arguments = function.get("arguments")
        builder.arguments(index, arguments if isinstance(arguments, str) else json.dumps(arguments or {}))
    prompt, completion, cached = openai_usage_counts(body.get("usage"))
    usage = responses_usage(prompt=prompt, completion=completion, cached=cached)
    builder.finish(incomplete=choice.get("finish_reason") == "length", usage=usage)
    assert builder.final is not None
    return builder.final


class ChatToResponsesStream:
    """Feed chat-completion chunks; get Responses events (``start`` first, ``finish`` at the end)."""

    def __init__(self, builder: ResponsesBuilder) -> None:
        self.builder = builder
        self.finish_reason: str | None = None
        self.counts = (0, 0, 0)

    def start(self) -> list[Json]:
        return self.builder.start()

    def feed(self, chunk: Json) -> list[Json]:
        if chunk.get("usage"):
            self.counts = openai_usage_counts(chunk["usage"])
        events: list[Json] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                events += self.builder.text(delta["content"])
            for call in delta.get("tool_calls") or []:
                index = int(call.get("index") or 0)
                function = call.get("function") or {}
                if index not in self.builder.calls:
                    call_id = str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}")
                    events += self.builder.call(index, call_id, str(function.get("name") or ""))
                events += self.builder.arguments(index, function.get("arguments") or "")
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Json]:
        prompt, completion, cached = self.counts
        usage = responses_usage(prompt=prompt, completion=completion, cached=cached)
        return self.builder.finish(incomplete=self.finish_reason == "length", usage=usage)
