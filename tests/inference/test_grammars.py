"""Grammars built and refused without a model (what the web side calls before admission), and prompts
rendered with tools the one way the engine and count_tokens both do it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.engine.grammars import (
    JSON_FORMAT,
    MORE_PARALLEL_CALLS,
    grammar_key,
    grammar_problems,
    marker_lark,
    schema_grammar,
    tool_call_grammar,
    tools_system_message,
)
from inference.engine.tokens import history_as_text, render_prompt, with_dict_arguments
from inference.engine.types import GenerationRequest, GrammarSpec
from tests.conftest import REPO
from tests.inference import tool_kit
from tests.inference.tool_kit import ADD, TOOLS, WEATHER

tool_model_dir = tool_kit.tool_model_dir  # a fixture, shared with the other grammar tests

GENERIC = {"start": marker_lark(text="<tool_call>", token=None), "end": marker_lark(text="</tool_call>", token=None)}


def schema_spec(schema: object) -> GrammarSpec:
    return GrammarSpec("json_schema", schema=schema)  # type: ignore[arg-type]


# ---- refused before admission ------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, 'Unimplemented keys: ["uniqueItems"]'),
        ({"type": "string", "pattern": "^(?=a).*$"}, "look-around"),
        ({"type": "string", "format": "x-foo"}, "Unknown format: x-foo"),
        ({"$ref": "#/$defs/missing"}, "/$defs/missing"),
        ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}, "uniqueItems"),
    ],
)
def test_a_schema_feature_that_cannot_be_enforced_is_named(schema, named):
    problems = grammar_problems(schema_spec(schema))

    assert len(problems) == 1
    assert named in problems[0]


def test_strict_false_schemas_are_refused_too_since_lenient_compiling_would_not_enforce_them():
    # The spec has no strict flag: whatever the client said, an unenforceable keyword is a problem.
    assert grammar_problems(schema_spec({"type": "object", "not": {"required": ["a"]}})) == [
        'Unimplemented keys: ["not"]'
    ]


def test_bounded_schemas_and_json_object_have_no_problems():
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    }
    assert grammar_problems(schema_spec(schema)) == []
    assert grammar_problems(GrammarSpec("json_object")) == []
    assert grammar_problems(GrammarSpec("tool_calls", tools=TOOLS)) == []


def test_a_schema_that_is_not_an_object_is_a_problem():
    assert grammar_problems(schema_spec(["not", "a", "schema"])) == ["the schema must be a JSON object"]


def test_tool_problems_name_the_tool_they_are_about():
    bad_parameters = {"type": "function", "function": {"name": "tags", "parameters": {"uniqueItems": True}}}
    spec = GrammarSpec(
        "tool_calls",
        tools=(
            {"type": "function", "function": {"name": "has space"}},
            bad_parameters,
            ADD,
            ADD,
            {"type": "retrieval"},
        ),
        choice="missing",
    )

    assert grammar_problems(spec) == [
        "tools[0].function.name must match ^[a-zA-Z0-9_-]{1,64}$",
        'tools[1].function.parameters: Unimplemented keys: ["uniqueItems"]',
        "tools[3].function.name 'add' is given twice",
        "tools[4] is not a function tool",
        "no tool is named 'missing'",
    ]
    assert grammar_problems(GrammarSpec("tool_calls")) == ["no tools are given to call"]


# ---- what the grammars say ---------------------------------------------------------------


def test_json_is_compiled_compact_whatever_compiler_options_the_client_sends():
    grammar = json.loads(schema_grammar(schema_spec({"type": "object", "x-guidance": {"whitespace_flexible": True}})))
    compiled = grammar["grammars"][0]["json_schema"]

    assert compiled["x-guidance"] == JSON_FORMAT


def test_a_tool_grammar_has_one_alternative_per_tool_and_a_bounded_number_of_calls():
    parallel = tool_call_grammar(GrammarSpec("tool_calls", tools=TOOLS), **GENERIC)
    single = tool_call_grammar(GrammarSpec("tool_calls", tools=TOOLS, parallel=False), **GENERIC)
    named = tool_call_grammar(GrammarSpec("tool_calls", tools=TOOLS, choice="add", parallel=False), **GENERIC)

    assert parallel.startswith(f'start: call ("\\n" call){{0,{MORE_PARALLEL_CALLS}}}\n')
    assert single.startswith("start: call\n")
    assert "get_weather" in single and "add" in single
    assert "get_weather" not in named and '\\"add\\"' in named
    assert marker_lark(text="<tool_call>", token=512) == "<[512]>"


def test_the_cache_key_is_the_same_for_the_same_spec_and_differs_otherwise():
    assert grammar_key(GrammarSpec("tool_calls", tools=TOOLS)) == grammar_key(GrammarSpec("tool_calls", tools=TOOLS))
    assert grammar_key(GrammarSpec("tool_calls", tools=TOOLS)) != grammar_key(
        GrammarSpec("tool_calls", tools=TOOLS, parallel=False)
    )


def test_the_grammar_module_imports_no_mlx():
    code = (
        "import json, sys; import inference.engine.grammars; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'mlx_vlm'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)

    assert json.loads(done.stdout) == []


# ---- prompts with tools ------------------------------------------------------------------

CALL_HISTORY = [
    {"role": "user", "content": "What is the weather in Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
    {"role": "user", "content": "thanks"},
]


def load_tokenizer(folder: Path):
    from mlx_lm.utils import load_tokenizer as load

    return load(folder)


def test_json_string_arguments_become_dicts_for_templates_that_render_them_with_tojson():
    converted = with_dict_arguments(CALL_HISTORY)

    assert converted[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Rome"}
    assert CALL_HISTORY[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'  # not mutated


def test_a_tool_template_renders_the_tools_and_the_history_with_its_own_format(tool_model_dir):
    tokenizer = load_tokenizer(tool_model_dir)
    request = GenerationRequest(model={"key": "", "path": "", "context_length": None}, messages=CALL_HISTORY)
    request.tools = list(TOOLS)

    text = tokenizer.decode(render_prompt(tokenizer, request))

    assert '"name": "get_weather"' in text and "<tools>" in text
    # A dict through `tojson`: the arguments as JSON, not a quoted JSON string.
    assert '{"name": "get_weather", "arguments": {"city": "Rome"}}' in text
    assert "<tool_response>\nsunny\n</tool_response>" in text


def test_a_template_without_tool_support_gets_tools_only_when_a_call_is_forced(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    spec = {"key": "", "path": "", "context_length": None}
    auto = GenerationRequest(model=spec, messages=CALL_HISTORY, tools=list(TOOLS))  # type: ignore[arg-type]
    forced = GenerationRequest(
        model=spec,  # type: ignore[arg-type]
        messages=CALL_HISTORY,
        tools=list(TOOLS),
        grammar=GrammarSpec("tool_calls", tools=TOOLS),
    )

    auto_text = tokenizer.decode(render_prompt(tokenizer, auto))
    forced_text = tokenizer.decode(render_prompt(tokenizer, forced))

    assert "You can call functions" not in auto_text
    assert forced_text.startswith("<|im_start|>system\n" + tools_system_message(TOOLS))
    for text in (auto_text, forced_text):
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>' in text
        assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nwarm" in text


def test_history_as_text_keeps_every_message_and_merges_a_run_of_tool_results():
    converted = history_as_text(CALL_HISTORY)

    assert [message["role"] for message in converted] == ["user", "assistant", "user", "user"]
    assert all(isinstance(message["content"], str) for message in converted)
    assert WEATHER["function"]["name"] in converted[1]["content"]
