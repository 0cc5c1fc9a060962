"""Grammars enforced while decoding: JSON schemas, any JSON object, forced tool calls (llguidance).

No MLX here and no tokenizer: the web side imports this module to refuse a request before admission
(``grammar_problems``), the engine thread to build the grammar it compiles (``schema_grammar``,
``tool_call_grammar``). The compiled matchers and the mask live in ``inference.engine.constrained``.

What is enforced and what is refused (measured in notes/issue13/constrained-decoding.md, section 3):
llguidance enforces enum/const, string lengths, patterns, the common formats, numeric bounds, array
bounds, anyOf/allOf, $ref/$defs and additionalProperties. It cannot enforce uniqueItems, contains,
propertyNames, dependentRequired, if/then/else, not, overlapping oneOf, look-around patterns, unknown
formats or remote $refs. Its ``lenient`` mode would compile those by ignoring them, so the output would
not be what the schema says: **every such schema is refused, ``strict: false`` included** (the issue
asks for a 400 naming the feature; a client that sends ``strict: false`` still gets output that
validates, never output that silently does not). Pydantic writes ``uniqueItems`` for ``set[...]``
fields: those schemas are refused too.

JSON is compiled without free whitespace and with json.dumps' separators (``", "``, ``": "``, what
Hermes/Qwen templates render), so a weak model cannot wander in whitespace; a client's ``x-guidance``
compiler options are dropped, never honoured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llguidance import LLMatcher, LLParserLimits

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

from inference.engine.types import GrammarSpec

JSON_FORMAT: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# OpenAI's rule for function names; it also makes a name safe inside a Lark string literal.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# parallel_tool_calls: one call and at most this many more. A real model stops by itself; a weak one
# would otherwise repeat calls until max_tokens.
MORE_PARALLEL_CALLS = 15
# The Hermes format, as text, for models whose template has no tool support (mlx-lm's json_tools parser
# reads it): "<tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>".
GENERIC_START = "<tool_call>"
GENERIC_END = "</tool_call>"
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
ANY_OBJECT: dict[str, Any] = {"type": "object"}  # llguidance's "any JSON object" (json_object)


def parser_limits() -> LLParserLimits:
    """llguidance's default work bounds per step, and errors that never echo the grammar's state or schema."""
    return LLParserLimits(verbose_errors=False)


def grammar_key(spec: GrammarSpec) -> str:
    """Canonical JSON of the spec: the compiled-grammar cache key (one cache per loaded model)."""
    # Not dataclasses.asdict: it deep-copies every schema first (2 ms for 24 tools, against 0.3 ms for this).
    fields = [spec.kind, spec.schema, spec.tools, spec.choice, spec.parallel]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _compilable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without the client's compiler options (``x-guidance``): ours are applied instead."""
    return {key: value for key, value in schema.items() if key != "x-guidance"}


def schema_grammar(spec: GrammarSpec) -> str:
    """The llguidance grammar of a json_schema or json_object spec."""
    schema = spec.schema if spec.kind == "json_schema" and spec.schema else ANY_OBJECT
    return LLMatcher.grammar_from_json_schema(_compilable(schema), overrides=JSON_FORMAT)


def tool_functions(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``function`` object of each OpenAI function tool."""
    return [tool.get("function") or {} for tool in tools]


def marker_lark(*, text: str, token: int | None) -> str:
    """A call marker in Lark: the single special token itself when it is one (llguidance keeps special
    tokens out of text, so a string literal would force the marker's spelling in ordinary tokens,
    out of the model's distribution), else the text literal."""
    return f"<[{token}]>" if token is not None else json.dumps(text)


def tool_call_grammar(spec: GrammarSpec, *, start: str, end: str) -> str:
    """A Lark grammar for Hermes/Qwen tool calls: ``START "\\n" {"name": "NAME", "arguments": ARGS} "\\n" END``.

    ``start``/``end`` are Lark (``marker_lark``). Each tool is one alternative with its name as a
    literal and its parameters as their own ``%json`` root, so their ``$defs``/``$ref`` resolve
    unchanged. ``spec.choice`` keeps only that tool; ``spec.parallel`` allows further calls, one per
    line, up to ``MORE_PARALLEL_CALLS`` more.
    """
    rules: list[str] = []
    alternatives: list[str] = []
    for index, function in enumerate(tool_functions(spec.tools)):
        name = str(function.get("name", ""))
        if not TOOL_NAME.match(name):
            raise ValueError(f"tool name {name!r} does not match {TOOL_NAME.pattern}")
        if spec.choice is not None and name != spec.choice:
            continue
        parameters = {**_compilable(function.get("parameters") or NO_PARAMETERS), "x-guidance": JSON_FORMAT}
        head = json.dumps('{"name": ' + json.dumps(name) + ', "arguments": ')
        rules.append(f'fn_{index}: {head} args_{index} "}}"')
        rules.append(f"args_{index}: %json {json.dumps(parameters, ensure_ascii=False)}")
        alternatives.append(f"fn_{index}")
    if not alternatives:
        raise ValueError("no tool to call")
    top = f'start: call ("\\n" call){{0,{MORE_PARALLEL_CALLS}}}' if spec.parallel else "start: call"
    call = f'call: {start} "\\n" ({" | ".join(alternatives)}) "\\n" {end}'
    return LLMatcher.grammar_from_lark("\n".join([top, call, *rules]))


def grammar_problems(spec: GrammarSpec) -> list[str]:
    """Why this spec cannot be enforced, one message per problem; [] when it can.

    For the web side's 400 (each message names the feature llguidance refuses, e.g. ``Unimplemented
    keys: ["uniqueItems"]``; tool problems start with ``tools[i]``). No tokenizer needed: a few ms at most.
    """
    if spec.kind == "json_object":
        return []
    if spec.kind == "json_schema":
        if not isinstance(spec.schema, dict):
            return ["the schema must be a JSON object"]
        return _validation_problems(schema_grammar(spec))
    problems: list[str] = []
    names: list[str] = []
    if not spec.tools:
        return ["no tools are given to call"]
    for index, tool in enumerate(spec.tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            problems.append(f"tools[{index}] is not a function tool")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problems.append(f"tools[{index}].function.name must match {TOOL_NAME.pattern}")
            continue
        if name in names:
            problems.append(f"tools[{index}].function.name {name!r} is given twice")
        names.append(name)
        parameters = function.get("parameters")
        if parameters is None:
            continue
        if not isinstance(parameters, dict):
            problems.append(f"tools[{index}].function.parameters must be a JSON object")
            continue
        grammar = LLMatcher.grammar_from_json_schema(_compilable(parameters), overrides=JSON_FORMAT)
        problems += [f"tools[{index}].function.parameters: {message}" for message in _validation_problems(grammar)]
    if spec.choice is not None and spec.choice not in names:
        problems.append(f"no tool is named {spec.choice!r}")
    if problems:
        return problems
    generic = tool_call_grammar(
        spec, start=marker_lark(text=GENERIC_START, token=None), end=marker_lark(text=GENERIC_END, token=None)
    )
    return _validation_problems(generic)


def _validation_problems(grammar: str) -> list[str]:
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, None, limits=parser_limits())
    return [message.strip() for message in messages] if is_error else []


def tools_system_message(tools: Sequence[dict[str, Any]]) -> str:
    """How tools reach a model whose chat template has no tool support: a system message in our own
    words, describing the Hermes format the grammar then forces."""
    listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        "You can call functions. Their signatures, one JSON object per line:\n<tools>\n"
        f"{listing}\n</tools>\n"
        f"To call one, answer with {GENERIC_START}\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n'
        f"{GENERIC_END} and nothing else."
    )
