"""A Responses request for the engine: its input items as the engine's conversation, its tools as a tool plan.

Input items become OpenAI-form chat messages (``inference.conversations.Conversation``): ``instructions``
and developer/system messages join the leading system text, an assistant message and the
``function_call`` items after it are one assistant turn, each ``function_call_output`` a tool turn;
``reasoning`` items are not shown again. Tools: functions, and a ``namespace``'s functions under their own
names (the call in the answer carries the namespace back); hosted tools (``web_search``, ...) are not
offered to a local model, which cannot call them (one log line per type).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from catalog.models import ModelKind, Profile
from inference.conversations import Conversation
from inference.engine.types import GenerationRequest
from inference.engine_requests import model_spec_for, sampling_params
from inference.errors import OpenAIError
from inference.schemas.responses import InputItem, InputPart, ResponsesRequest
from inference.thinking import responses_thinking
from inference.tooling import Choice, ToolPlan, function_tool, json_grammar, tool_plan
from routing.translation.responses_api import HOSTED_TOOL_TYPES

logger = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "refusal")

_dropped: set[str] = set()
_dropped_lock = threading.Lock()


def _log_dropped_once(kind: str) -> None:
    with _dropped_lock:
        if kind in _dropped:
            return
        _dropped.add(kind)
    logger.info("tools of type %s are not offered to local models (they run on OpenAI's side); logged once", kind)


# ---- tools ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponsesTools:
    functions: list[dict[str, Any]] = field(default_factory=list)  # in OpenAI chat form, for tooling
    namespaces: dict[str, str] = field(default_factory=dict)  # function name -> its namespace tool


def _function(tool: Any, param: str) -> dict[str, Any]:
    return function_tool(name=tool.name, description=tool.description, parameters=tool.parameters, param=param)


def _offered(tool: Any, param: str) -> bool:
    """Whether a tool is offered to the model: functions are; hosted tools are dropped; the rest is a 400."""
    if tool.type == "function":
        return True
    if tool.type in HOSTED_TOOL_TYPES:
        _log_dropped_once(tool.type)
        return False
    if tool.type == "custom":
        message = "Custom tools (free-text input) are not supported yet; define a function tool."
    else:
        message = f"Tools of type '{tool.type}' are not supported; use function tools."
    raise OpenAIError(message, param=f"{param}.type", code="unsupported_tool")


def responses_tools(payload: ResponsesRequest) -> ResponsesTools:
    """The function tools a request offers, checked (a 400 naming ``tools[i]...`` when one is unusable)."""
    tools = ResponsesTools()
    for index, tool in enumerate(payload.tools or []):
        param = f"tools[{index}]"
        if tool.type == "namespace":
            if not isinstance(tool.name, str) or not tool.name:
                raise OpenAIError("A namespace tool needs its name.", param=f"{param}.name")
            for nested_index, nested in enumerate(tool.tools or []):
                nested_param = f"{param}.tools[{nested_index}]"
                if _offered(nested, nested_param):
                    tools.functions.append(_function(nested, nested_param))
                    tools.namespaces[str(nested.name)] = tool.name
        elif _offered(tool, param):
            tools.functions.append(_function(tool, param))
    return tools


def responses_choice(raw: Any, functions: list[dict[str, Any]]) -> tuple[Choice, list[dict[str, Any]]]:
    """``tool_choice``: none, auto, required, ``{type: function, name}``, ``{type: allowed_tools, mode, tools}``."""
    if raw is None:
        return Choice("auto"), functions
    if raw in ("none", "auto", "required"):
        return Choice(raw), functions
    if isinstance(raw, dict) and raw.get("type") == "function":
        return Choice("named", raw.get("name")), functions
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        mode = raw.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise OpenAIError("allowed_tools.mode is auto or required.", param="tool_choice.mode")
        names = {allowed.get("name") for allowed in raw.get("tools") or [] if isinstance(allowed, dict)}
        return Choice(mode), [tool for tool in functions if tool["function"]["name"] in names]
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        raise OpenAIError(
            f"tool_choice of type '{raw['type']}' asks for a tool a local model cannot call; choose a function.",
            param="tool_choice.type",
            code="unsupported_tool",
        )
    raise OpenAIError(
        "tool_choice is none, auto, required, {type: function, name} or {type: allowed_tools, mode, tools}.",
        param="tool_choice",
    )


def responses_tool_plan(payload: ResponsesRequest) -> tuple[ToolPlan, dict[str, str]]:
    """What the engine gets (tools rendered, the grammar enforced), and the namespaces of the functions."""
    tools = responses_tools(payload)
    choice, functions = responses_choice(payload.tool_choice, tools.functions)
    output = None
    text_format = payload.text.format if payload.text is not None else None
    if text_format is not None:
        output = json_grammar(kind=text_format.type, schema=text_format.schema_, param="text.format")
    # max_tool_calls of 1 is one call; more than one bounds nothing the engine needs bounding (one turn).
    parallel = payload.parallel_tool_calls is not False and payload.max_tool_calls != 1
    plan = tool_plan(
        tools=functions,
        choice=choice,
        parallel=parallel,
        output=output,
        tools_param="tools",
        choice_param="tool_choice",
    )
    return plan, tools.namespaces


# ---- input items ---------------------------------------------------------------------------------------------


def _unsupported_part(part: InputPart, param: str) -> OpenAIError:
    if part.type == "input_file":
        message = "File inputs are not supported; send the text as input_text, images as input_image."
    else:
        message = f"Content parts of type '{part.type}' are not supported here."
    return OpenAIError(message, param=f"{param}.type", code="unsupported_content")


def _text(parts: str | list[InputPart] | None, param: str, *, images: str) -> str:
    """The text of a content or output that may hold text parts only (``images`` says why not)."""
    if parts is None or isinstance(parts, str):
        return parts or ""
    pieces = []
    for index, part in enumerate(parts):
        if part.type in TEXT_PARTS:
            pieces.append(part.text if part.text is not None else part.refusal or "")
        elif part.type == "input_image":
            raise OpenAIError(images, param=f"{param}[{index}]")
        else:
            raise _unsupported_part(part, f"{param}[{index}]")
    return "\n".join(pieces)


def _user_turn(conversation: Conversation, item: InputItem, param: str, *, vision: bool) -> None:
    content = item.content
    if not isinstance(content, list) or not any(part.type == "input_image" for part in content):
        conversation.messages.append({"role": "user", "content": _text(content, f"{param}.content", images="")})
        return
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_param = f"{param}.content[{index}]"
        if part.type in TEXT_PARTS:
            parts.append({"type": "text", "text": part.text if part.text is not None else part.refusal or ""})
        elif part.type != "input_image":
            raise _unsupported_part(part, part_param)
        elif not vision:
            raise OpenAIError("Image inputs are not supported by this model.", param=part_param)
        elif not part.image_url:
            raise OpenAIError(
                "Images by file_id need OpenAI's file store; send the image as image_url (a data: or https: URL).",
                param=f"{part_param}.file_id" if part.file_id else f"{part_param}.image_url",
            )
        else:
            parts.append({"type": "image"})
            conversation.images.append((part.image_url, f"{part_param}.image_url"))
    conversation.messages.append({"role": "user", "content": parts})


def responses_conversation(
    items: list[tuple[str, InputItem]], *, instructions: str | None, vision: bool
) -> Conversation:
    """The engine's messages for the items (each with the param a refusal names)."""
    conversation = Conversation()
    conversation.add_system(instructions or "")
    turn: tuple[str, list[tuple[str, str, str]]] | None = None  # the assistant turn being gathered

    def end_turn() -> None:
        nonlocal turn
        if turn is not None:
            conversation.add_calls(*turn)
            turn = None

    for param, item in items:
        kind = item.kind
        if kind == "message":
            if item.role not in ROLES:
                raise OpenAIError(f"A message's role is one of {', '.join(ROLES)}.", param=f"{param}.role")
            only_text = "Images are accepted in user messages only."
            if item.role in ("system", "developer"):
                conversation.add_system(_text(item.content, f"{param}.content", images=only_text))
            elif item.role == "assistant":
                end_turn()
                turn = (_text(item.content, f"{param}.content", images=only_text), [])
            else:
                end_turn()
                _user_turn(conversation, item, param, vision=vision)
        elif kind == "function_call":
            if not item.call_id or not item.name:
                missing = "call_id" if not item.call_id else "name"
                raise OpenAIError(f"A function_call item needs its {missing}.", param=f"{param}.{missing}")
            turn = turn or ("", [])
            turn[1].append((item.call_id, item.name, item.arguments or "{}"))
        elif kind == "function_call_output":
            if not item.call_id:
                raise OpenAIError("A function_call_output item needs its call_id.", param=f"{param}.call_id")
            end_turn()
            parts = item.output_parts(f"{param}.output")
            output = _text(parts, f"{param}.output", images="A function's output is text here (input_text).")
            conversation.add_result(item.call_id, output)
        elif kind == "reasoning":
            continue  # an earlier turn's reasoning is not shown to the model again
        elif kind is None:
            raise OpenAIError("An input item needs its type (or a role, for a message).", param=f"{param}.type")
        else:
            raise OpenAIError(
                f"Input items of type '{kind}' are not supported; send messages, function_call and "
                "function_call_output items.",
                param=f"{param}.type",
                code="unsupported_item",
            )
    end_turn()
    return conversation


@dataclass(frozen=True)
class TemperatureAndTopP:
    """The sampling fields a Responses request has (sampling_params reads the others as absent)."""

    temperature: float | None
    top_p: float | None


def responses_request(
    *, payload: ResponsesRequest, items: list[tuple[str, InputItem]], profile: Profile, trace_id: str
) -> tuple[GenerationRequest, list[tuple[str, str]], dict[str, str]]:
    """The engine request, its images (url, param) to fetch after the reservation, and the namespaces of its
    functions (for the calls in the answer)."""
    payload.refuse_fields()
    vision = profile.local_model.kind == ModelKind.VISION
    conversation = responses_conversation(items, instructions=payload.instructions, vision=vision)
    plan, namespaces = responses_tool_plan(payload)
    thinking = responses_thinking(payload)
    request = GenerationRequest(
        trace_id=trace_id,
        model=model_spec_for(profile),
        messages=conversation.with_system_prompt(profile.system_prompt),
        max_tokens=payload.max_output_tokens or profile.default_max_tokens,
        sampling=sampling_params(TemperatureAndTopP(payload.temperature, payload.top_p), profile),
        tools=plan.tools,
        grammar=plan.grammar,
        max_tool_calls=plan.max_calls,
        template_kwargs=thinking.template_kwargs,
        thinking=thinking.thinking,
    )
    return request, conversation.images, namespaces
