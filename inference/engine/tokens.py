"""Prompts rendered to token ids the one way the engine does it, and counted without loading a model.

``render_prompt`` is what a text runner feeds its batch; ``count_prompt_tokens`` gives the same
count for a model that is not loaded (Anthropic's count_tokens), from its tokenizer alone, tools
included.

Tools reach a model through its own chat template (``tools=``) when mlx-lm knows the template's
tool-call format (``TokenizerWrapper.has_tool_calling``). History then keeps its structure, with each
call's ``arguments`` JSON string turned into the dict templates expect: Qwen2.5's and Llama 3's
templates render ``tool_call.arguments | tojson`` unconditionally (a string would come out quoted and
escaped); Qwen3's accepts either. A template without tool support gets the tools in a system message
(only when a call is forced: with ``auto`` such a model answers in text), and history with calls and
tool results as Hermes text, which any template can render.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from inference.engine.grammars import GENERIC_END, GENERIC_START, tools_system_message
from inference.engine.reasoning import close_thinking, template_options
from inference.engine.types import EngineError, GenerationRequest

# Tokenizers kept for counting, by model folder (each holds its vocabulary: a few MB).
COUNTING_TOKENIZERS = 8


def template_error(exc: Exception) -> EngineError:
    """A chat template that refuses the messages ("System role not supported") is the request's fault."""
    reason = str(exc).strip() or type(exc).__name__
    return EngineError(
        f"This model's chat template cannot render these messages: {reason}",
        status=400,
        code="invalid_request_error",
        param="messages",
    )


def render_prompt(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The prompt's token ids: given ids, a raw prompt, or the messages through the chat template."""
    if request.prompt_tokens is not None:
        return list(request.prompt_tokens)
    if request.messages is None:
        return list(tokenizer.encode(request.prompt or ""))
    if tokenizer.chat_template is None:
        raise EngineError(
            "This model has no chat template; use /v1/completions.", status=400, code="invalid_request_error"
        )
    from jinja2 import TemplateError

    tools = tools_of(request)
    attempts: list[tuple[list[dict[str, Any]], dict[str, Any]]]
    if getattr(tokenizer, "has_tool_calling", False):
        attempts = [(with_dict_arguments(request.messages), {"tools": tools} if tools else {})]
    else:
        history = history_as_text(request.messages)
        if tools and forces_calls(request):
            # As a system message, or for templates that refuse the system role, in the first user message.
            attempts = [(with_system_text(history, tools_system_message(tools)), {})]
            attempts.append((with_first_user_text(history, tools_system_message(tools)), {}))
        else:
            attempts = [(history, {})]
    for attempt, (messages, extra) in enumerate(attempts, 1):
        try:
            ids = tokenizer.apply_chat_template(messages, **template_options(request), **extra)
            break
        except (TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            if attempt == len(attempts):
                raise template_error(exc) from exc
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    return close_thinking(tokenizer, request, list(ids))


def tools_of(request: GenerationRequest) -> list[dict[str, Any]]:
    """The tools the prompt shows: the request's, else those its grammar forces."""
    if request.tools is not None:
        return list(request.tools)
    if request.grammar is not None and request.grammar.kind == "tool_calls":
        return list(request.grammar.tools)
    return []


def forces_calls(request: GenerationRequest) -> bool:
    return request.grammar is not None and request.grammar.kind == "tool_calls"


def with_dict_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant calls with their JSON-string arguments as dicts (what chat templates render)."""
    converted = []
    for message in messages:
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if calls:
            message = {**message, "tool_calls": [_call_with_dict_arguments(call) for call in calls]}
        converted.append(message)
    return converted


def _call_with_dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    try:
        arguments = json.loads(function["arguments"])
    except ValueError:
        return call  # not JSON: the template gets the text as the client sent it
    if not isinstance(arguments, dict):
        return call
    return {**call, "function": {**function, "arguments": arguments}}


def history_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls and tool results as Hermes text, for templates that know neither: each assistant call as
    ``<tool_call>`` + its JSON, each run of tool results as one user turn of ``<tool_response>`` blocks."""
    converted: list[dict[str, Any]] = []
    results: list[str] = []
    for message in messages:
        if message.get("role") == "tool":
            results.append(f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>")
            continue
        if results:
            converted.append({"role": "user", "content": "\n".join(results)})
            results = []
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if calls:
            written = [_hermes_call(call) for call in calls]
            content = _text(message.get("content"))
            message = {
                "role": "assistant",
                "content": "\n".join(([content] if content else []) + written),
            }
        elif message.get("content") is None:
            message = {**message, "content": ""}
        converted.append(message)
    if results:
        converted.append({"role": "user", "content": "\n".join(results)})
    return converted


def _hermes_call(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    arguments_text = arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)
    body = '{"name": ' + json.dumps(str(function.get("name", "")), ensure_ascii=False) + ', "arguments": '
    return f"{GENERIC_START}\n{body}{arguments_text}}}\n{GENERIC_END}"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        return [{**first, "content": f"{_text(first.get('content'))}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def with_first_user_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    converted = [dict(message) for message in messages]
    for message in converted:
        if message.get("role") == "user":
            message["content"] = f"{text}\n\n{_text(message.get('content'))}"
            return converted
    return [{"role": "user", "content": text}, *converted]


@functools.lru_cache(maxsize=COUNTING_TOKENIZERS)
def _tokenizer(path: str) -> Any:
    from pathlib import Path

    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(Path(path))  # what mlx_lm.load gives a runner: the same template and special tokens


def count_prompt_tokens(request: GenerationRequest) -> int:
    return len(render_counted(request))


def render_counted(request: GenerationRequest, *, context_length: int = 0) -> list[int]:
    """``render_prompt`` with this module's own tokenizer for the model's folder (never a runner's, which
    its engine thread uses): for work on another thread. With ``context_length``, a prompt that cannot fit
    is refused before it is tokenized (an 8 MiB prompt costs tens of seconds of tokenizer time here)."""
    tokenizer = _tokenizer(request.model["path"])
    if context_length:
        # No token covers more characters than the vocabulary's longest: the prompt has at least this many.
        at_least = -(-prompt_chars(request) // _longest_token(request.model["path"]))
        if at_least > context_length:
            raise EngineError(
                f"This model's maximum context length is {context_length} tokens, but the prompt has at least "
                f"{at_least} tokens.",
                status=400,
                code="context_length_exceeded",
                param="messages" if request.messages is not None else "prompt",
            )
    return render_prompt(tokenizer, request)


@functools.lru_cache(maxsize=COUNTING_TOKENIZERS)
def _longest_token(path: str) -> int:
    """The most characters one token of the model's vocabulary stands for (added tokens included)."""
    vocabulary = _tokenizer(path).get_vocab()
    return max((len(token) for token in vocabulary), default=1) or 1


def prompt_chars(request: GenerationRequest) -> int:
    """About how long the prompt is, in characters, without rendering it."""
    if request.messages is None:
        return len(request.prompt or "")
    return sum(len(_text(message.get("content"))) for message in request.messages)
