"""The tool-call tracker on decoded text: content apart from calls, calls as events (id and name first),
the same result token by token as all at once, and nothing lost when a span is not a call."""

from __future__ import annotations

import importlib
import json
from typing import Any

from inference.engine.toolcalls import GENERIC_FORMAT, Piece, ToolCallTracker, ToolFormat, native_format
from tests.inference import tool_kit
from tests.inference.tool_kit import CALL_ID, TOOLS

tool_model_dir = tool_kit.tool_model_dir  # a fixture

TWO_CALLS = (
    'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "unit": "celsius"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"x": 1, "y": 22}}\n</tool_call>'
)


def tracker(*, forced: bool = False, format: ToolFormat = GENERIC_FORMAT) -> ToolCallTracker:
    return ToolCallTracker(format=format, tools=list(TOOLS), forced=forced)


def run(pieces: list[str], **options: Any) -> list[Piece]:
    reader = tracker(**options)
    out: list[Piece] = []
    for piece in pieces:
        out += reader.feed(piece)
    return out + reader.finish()


def summary(out: list[Piece]) -> tuple[str, list[tuple[str, str]]]:
    """(content text, [(name, arguments)]) as a client puts them together."""
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    text = ""
    for piece in out:
        if isinstance(piece, str):
            text += piece
        elif piece["type"] == "tool_call":
            names[piece["index"]] = piece["name"]
        else:
            arguments[piece["index"]] = arguments.get(piece["index"], "") + piece["arguments"]
    return text, [(names[index], arguments.get(index, "")) for index in sorted(names)]


def detokenized(tokenizer: Any, text: str) -> list[str]:
    """The text as the engine sees it: one detokenizer segment per token."""
    detokenizer = tokenizer.detokenizer
    pieces = []
    for token in tokenizer.encode(text, add_special_tokens=False):
        detokenizer.add_token(token)
        pieces.append(detokenizer.last_segment)
    detokenizer.finalize()
    return [*pieces, detokenizer.last_segment]


def test_calls_streamed_token_by_token_equal_the_whole_text_read_at_once(tool_model_dir):
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(tool_model_dir)
    native = native_format(tokenizer)
    assert native is not None and native.parser.__name__.endswith("json_tools")
    pieces = detokenized(tokenizer, TWO_CALLS)

    streamed = run(pieces, format=native)
    whole = run([TWO_CALLS], format=native)

    assert len(pieces) > 40
    assert summary(streamed) == summary(whole)
    assert summary(streamed) == (
        "Let me check.\n",
        [("get_weather", '{"city": "Rome", "unit": "celsius"}'), ("add", '{"x": 1, "y": 22}')],
    )
    # Arguments came in many pieces, each call's id and name before any of them.
    assert sum(1 for piece in streamed if not isinstance(piece, str) and piece["type"] == "tool_arguments") > 10
    seen: set[int] = set()
    for piece in streamed:
        if isinstance(piece, dict):
            if piece["type"] == "tool_call":
                assert CALL_ID.match(piece["id"])
                seen.add(piece["index"])
            else:
                assert piece["index"] in seen


def test_the_arguments_are_the_text_the_model_wrote_not_a_re_serialisation():
    compact = '<tool_call>\n{"name": "add", "arguments": {"x":1,"y":2}}\n</tool_call>'

    assert summary(run(list(compact)))[1] == [("add", '{"x":1,"y":2}')]


def test_a_span_that_is_not_a_call_comes_back_as_text_markers_included():
    text = "before <tool_call>\nthis is not json\n</tool_call> after"

    assert summary(run(list(text))) == (text, [])


def test_a_partial_marker_is_held_back_then_released_as_text():
    reader = tracker()

    assert reader.feed("a <tool") == ["a "]
    assert reader.feed("box") == ["<toolbox"]
    assert reader.feed(" <tool_c") == [" "]
    assert reader.finish() == ["<tool_c"]


def test_a_call_cut_short_keeps_what_was_sent_and_a_span_cut_before_its_name_is_text():
    cut = run(list('<tool_call>\n{"name": "add", "arguments": {"x": 1'))
    early = run(list('<tool_call>\n{"na'))

    assert summary(cut) == ("", [("add", '{"x": 1')])
    assert summary(early) == ('<tool_call>\n{"na', [])


def test_under_a_forced_grammar_the_separators_between_calls_are_not_content():
    assert summary(run(list(TWO_CALLS.removeprefix("Let me check.")), forced=True))[0] == ""


def test_the_name_is_announced_from_the_grammars_forced_bytes_before_it_is_decoded():
    reader = tracker(forced=True)

    first = reader.feed('<tool_call>\n{"name": "get', lookahead='_weather", "arguments": {"city": "')

    assert [piece["type"] for piece in first if isinstance(piece, dict)] == ["tool_call"]
    assert first[0]["name"] == "get_weather"  # type: ignore[index]
    rest = reader.feed('_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>')
    assert summary(first + rest + reader.finish())[1] == [("get_weather", '{"city": "Oslo", "unit": "celsius"}')]


def test_other_formats_stream_through_their_mlx_lm_parser():
    qwen3_coder = importlib.import_module("mlx_lm.tool_parsers.qwen3_coder")
    xml = ToolFormat(parser=qwen3_coder, start=qwen3_coder.tool_call_start, end=qwen3_coder.tool_call_end)
    text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>"

    streamed = run([text[i : i + 3] for i in range(0, len(text), 3)], format=xml)

    assert summary(streamed) == ("", [("get_weather", '{"city": "Rome"}')])


def test_a_format_without_an_end_marker_is_parsed_whole_when_the_output_ends():
    mistral = importlib.import_module("mlx_lm.tool_parsers.mistral")
    format = ToolFormat(parser=mistral, start=mistral.tool_call_start, end="")

    out = run(list('Sure.[TOOL_CALLS]add[ARGS]{"x": 1, "y": 2}'), format=format)

    text, calls = summary(out)
    assert text == "Sure."
    assert [(name, json.loads(arguments)) for name, arguments in calls] == [("add", {"x": 1, "y": 2})]
