"""Tools, tool choice and structured output, from any protocol's fields to what the engine is told.

Every protocol (OpenAI chat, Anthropic messages, the Responses API) names the same few things
differently; each router turns its fields into ``FunctionTool`` lists, a ``Choice`` and a
``GrammarSpec`` for the output format, and ``tool_plan`` decides what the engine gets: the tools its
chat template renders, and the grammar it enforces while decoding (forced calls, or JSON).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from inference.engine.types import GrammarSpec
from inference.errors import OpenAIError
from inference.schemas.anthropic import AnthropicCountTokensRequest
from inference.schemas.openai import ChatCompletionRequest

# OpenAI's rule for function names; it also keeps them safe inside a tool-call grammar.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
MAX_TOOLS = 128

ChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class Choice:
    mode: ChoiceMode = "auto"
    name: str | None = None  # with mode "named"


@dataclass(frozen=True)
class ToolPlan:
    tools: list[dict[str, Any]] | None  # rendered by the template; None: none offered, nothing parsed
    grammar: GrammarSpec | None  # enforced while decoding
    max_calls: int | None = None  # auto with parallel_tool_calls false: the answer ends after one call


def function_tool(*, name: Any, description: Any, parameters: Any, param: str) -> dict[str, Any]:
    """One tool in OpenAI chat form, checked: a usable name and an object schema for its arguments."""
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise OpenAIError("A tool name must be 1 to 64 letters, digits, underscores or dashes.", param=f"{param}.name")
    if parameters is None:
        parameters = EMPTY_PARAMETERS
    if not isinstance(parameters, dict):
        raise OpenAIError("A tool's parameters must be a JSON schema object.", param=f"{param}.parameters")
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if isinstance(description, str) and description:
        function["description"] = description
    return {"type": "function", "function": function}


def check_tools(tools: list[dict[str, Any]], *, param: str) -> None:
    if len(tools) > MAX_TOOLS:
        raise OpenAIError(f"At most {MAX_TOOLS} tools may be offered in one request.", param=param)
    names = [tool["function"]["name"] for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise OpenAIError(f"Tool names must be unique; repeated: {', '.join(duplicates)}.", param=param)


def checked_grammar(spec: GrammarSpec, *, param: str) -> GrammarSpec:
    """The grammar, if llguidance can enforce every part of it; else a 400 naming what it cannot."""
    from inference.engine.grammars import grammar_problems

    problems = grammar_problems(spec)
    if problems:
        raise OpenAIError(
            f"This schema cannot be enforced while decoding: {'; '.join(problems)}",
            param=param,
            code="unsupported_schema",
        )
    return spec


def json_grammar(*, kind: str, schema: Any, param: str) -> GrammarSpec | None:
    """``text`` → None; ``json_object`` → any JSON object; ``json_schema`` → JSON valid for ``schema``."""
    if kind == "text":
        return None
    if kind == "json_object":
        return checked_grammar(GrammarSpec(kind="json_object"), param=param)
    if not isinstance(schema, dict):
        raise OpenAIError("A json_schema format needs its schema (a JSON object).", param=f"{param}.schema")
    return checked_grammar(GrammarSpec(kind="json_schema", schema=schema), param=param)


def tool_plan(
    *,
    tools: list[dict[str, Any]] | None,
    choice: Choice,
    parallel: bool,
    output: GrammarSpec | None,
    tools_param: str,
    choice_param: str,
    explicit_parallel: bool = False,
) -> ToolPlan:
    """What the engine gets. ``none``: no tools rendered, nothing parsed. ``auto``: the tools rendered and
    calls parsed when the model makes them (a JSON output format, if any, is enforced instead). ``required``
    and a named tool: a call enforced while decoding, so even a model that would never call one does."""
    tools = tools or None
    if tools is not None:
        check_tools(tools, param=tools_param)
    if choice.mode == "none" or tools is None:
        if choice.mode in ("required", "named"):
            raise OpenAIError("tool_choice asks for a tool call, but no tools were given.", param=choice_param)
        return ToolPlan(tools=None, grammar=output)
    if choice.mode == "auto":
        return ToolPlan(tools=tools, grammar=output, max_calls=None if parallel else 1)
    if choice.mode == "named" and choice.name not in {tool["function"]["name"] for tool in tools}:
        raise OpenAIError(f"tool_choice names '{choice.name}', which is not among the tools.", param=choice_param)
    grammar = GrammarSpec(
        kind="tool_calls",
        tools=tuple(tools),
        choice=choice.name if choice.mode == "named" else None,
        # A named tool is one call (OpenAI answers one; instructor and LangChain read one), unless the client
        # asked for parallel calls in so many words.
        parallel=parallel if choice.mode == "required" else parallel is True and explicit_parallel,
    )
    return ToolPlan(tools=tools, grammar=checked_grammar(grammar, param=tools_param))


# ---- each protocol's fields -----------------------------------------------------------------------------------


def chat_tool_plan(payload: ChatCompletionRequest) -> ToolPlan:
    """OpenAI chat: ``tools`` (or the deprecated ``functions``), ``tool_choice`` (or ``function_call``),
    ``parallel_tool_calls``, ``response_format``."""
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(payload.tools or []):
        param = f"tools[{index}]"
        if tool.type != "function" or tool.function is None:
            raise OpenAIError(f"Tools of type '{tool.type}' are not supported; use function tools.", param=param)
        function = tool.function
        tools.append(
            function_tool(
                name=function.name,
                description=function.description,
                parameters=function.parameters,
                param=f"{param}.function",
            )
        )
    for index, function in enumerate(payload.functions or []):
        tools.append(
            function_tool(
                name=function.name,
                description=function.description,
                parameters=function.parameters,
                param=f"functions[{index}]",
            )
        )
    choice_param = "tool_choice" if payload.tool_choice is not None else "function_call"
    raw_choice = payload.tool_choice if payload.tool_choice is not None else payload.function_call
    choice, tools = _chat_choice(raw_choice, tools, param=choice_param)
    output = None
    if payload.response_format is not None:
        schema = payload.response_format.json_schema.schema_ if payload.response_format.json_schema else None
        output = json_grammar(kind=payload.response_format.type, schema=schema, param="response_format")
    parallel = payload.parallel_tool_calls is not False
    return tool_plan(
        tools=tools,
        choice=choice,
        parallel=parallel,
        output=output,
        tools_param="tools",
        choice_param=choice_param,
        explicit_parallel=payload.parallel_tool_calls is True,
    )


def _chat_choice(raw: Any, tools: list[dict[str, Any]], *, param: str) -> tuple[Choice, list[dict[str, Any]]]:
    if raw is None:
        return Choice("auto"), tools
    if raw in ("none", "auto", "required"):
        return Choice(raw), tools
    if isinstance(raw, dict):
        kind = raw.get("type", "function" if "name" in raw else None)
        if kind == "function":
            name = (raw.get("function") or {}).get("name") if "function" in raw else raw.get("name")
            return Choice("named", name), tools
        if kind == "allowed_tools":
            allowed = raw.get("allowed_tools") or {}
            names = {(item.get("function") or item).get("name") for item in allowed.get("tools") or []}
            mode = allowed.get("mode", "auto")
            if mode not in ("auto", "required"):
                raise OpenAIError("allowed_tools.mode is auto or required.", param=f"{param}.allowed_tools.mode")
            return Choice(mode), [tool for tool in tools if tool["function"]["name"] in names]
    raise OpenAIError(
        "tool_choice is none, auto, required, a function ({type: function, function: {name}}) or allowed_tools.",
        param=param,
    )


def anthropic_tool_plan(payload: AnthropicCountTokensRequest) -> ToolPlan:
    """Anthropic: ``tools`` (client tools), ``tool_choice`` (auto, any, tool, none; disable_parallel_tool_use),
    ``output_config.format`` (a JSON schema)."""
    tools = []
    for index, tool in enumerate(payload.tools or []):
        param = f"tools[{index}]"
        if tool.type not in (None, "custom"):
            raise OpenAIError(
                f"Anthropic's own tool '{tool.type}' is not supported here; define it as a client tool.", param=param
            )
        tools.append(
            function_tool(name=tool.name, description=tool.description, parameters=tool.input_schema, param=param)
        )
    choice = Choice("auto")
    parallel = True
    if payload.tool_choice is not None:
        mode = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}[payload.tool_choice.type]
        choice = Choice(mode, payload.tool_choice.name)  # type: ignore[arg-type]
        parallel = not payload.tool_choice.disable_parallel_tool_use
    output = None
    if payload.output_config is not None and payload.output_config.format is not None:
        output = json_grammar(
            kind="json_schema", schema=payload.output_config.format.schema_, param="output_config.format"
        )
    return tool_plan(
        tools=tools, choice=choice, parallel=parallel, output=output, tools_param="tools", choice_param="tool_choice"
    )
