"""Structured outputs and forced tool calls enforced while decoding, on random-weight models, the engine
driven directly: what comes out is valid for its schema, and the rest of the shared batch is untouched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from inference.engine.constrained import WRITTEN_FOR, GrammarCache, source_fingerprints
from inference.engine.grammars import schema_grammar
from inference.engine.local import InProcessEngineClient
from inference.engine.tokens import count_prompt_tokens
from inference.engine.types import GrammarSpec, ModelSpec, SamplingParams
from tests.inference import tool_kit
from tests.inference.engine_kit import GREEDY, Outcome, collect, generation, run
from tests.inference.tool_kit import BOUNDED_SCHEMA, CALL_ID, PARAMETERS, TOOLS, schema_errors

tool_model_dir = tool_kit.tool_model_dir  # fixtures
text_marker_tool_model_dir = tool_kit.text_marker_tool_model_dir

QUESTION = [{"role": "user", "content": "What is the weather in Rome, and what is 2 + 3?"}]
PROMPTS = ["tell me about the river", "a story about a boy and his dog", "what is the best food", "hello there"]


def spec_of(folder: Path) -> ModelSpec:
    return {"key": str(folder), "path": str(folder), "context_length": None}


@pytest.fixture
def spec(tiny_model_dir: Path) -> ModelSpec:
    return spec_of(tiny_model_dir)


def forced(*, choice: str | None = None, parallel: bool = False) -> GrammarSpec:
    return GrammarSpec("tool_calls", tools=TOOLS, choice=choice, parallel=parallel)


def calls_of(outcome: Outcome) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of each call, after checking each call's id and name came before its arguments."""
    calls: dict[int, list[str]] = {}
    for event in outcome.events:
        if event["type"] == "tool_call":
            assert event["index"] == len(calls)
            assert CALL_ID.match(event["id"])
            calls[event["index"]] = [event["id"], event["name"], ""]
        elif event["type"] == "tool_arguments":
            assert event["index"] in calls, "arguments before their call's id and name"
            calls[event["index"]][2] += event["arguments"]
    return [(call_id, name, arguments) for call_id, name, arguments in calls.values()]


def assert_valid_call(name: str, arguments: str) -> None:
    assert schema_errors(json.loads(arguments), PARAMETERS[name]) == []
    # The grammar writes json.dumps' spacing, so the pieces are exactly what a whole read gives back.
    assert arguments == json.dumps(json.loads(arguments))


# ---- the mlx-lm code the grammar batch copies ---------------------------------------------


def test_the_mlx_lm_methods_the_grammar_batch_copies_are_the_ones_it_was_written_for():
    # If this fails after an mlx-lm upgrade, port the new GenerationBatch._step / PromptProcessingBatch.generate
    # into inference/engine/constrained.py (keeping _apply_grammars) and update WRITTEN_FOR.
    assert source_fingerprints() == WRITTEN_FOR


# ---- structured outputs ------------------------------------------------------------------


async def test_json_schema_requests_return_json_valid_for_the_schema_and_stop(engine, spec):
    grammar = GrammarSpec("json_schema", schema=BOUNDED_SCHEMA)
    outcomes = await asyncio.gather(
        *(run(engine, generation(spec, prompt=prompt, grammar=grammar, max_tokens=120)) for prompt in PROMPTS)
    )

    for outcome in outcomes:
        assert outcome.last["finish_reason"] == "stop", outcome.text
        assert schema_errors(json.loads(outcome.text), BOUNDED_SCHEMA) == []
        assert outcome.last["completion_tokens"] < 120


async def test_json_object_ends_as_an_object_or_runs_to_length_on_a_valid_prefix(engine, spec, tiny_model_dir):
    import llguidance.hf
    from llguidance import LLMatcher
    from mlx_lm.utils import load_tokenizer

    grammar = GrammarSpec("json_object")
    outcomes = await asyncio.gather(
        *(run(engine, generation(spec, prompt=prompt, grammar=grammar, max_tokens=40)) for prompt in PROMPTS)
    )
    tokenizer = llguidance.hf.from_tokenizer(load_tokenizer(tiny_model_dir)._tokenizer)

    for outcome in outcomes:
        assert outcome.text.startswith("{")
        if outcome.last["finish_reason"] == "stop":
            assert isinstance(json.loads(outcome.text), dict)
        else:
            assert outcome.last["finish_reason"] == "length"
            ids = tokenizer.tokenize_str(outcome.text)
            assert LLMatcher(tokenizer, schema_grammar(grammar)).try_consume_tokens(ids) == len(ids)


async def test_a_stop_string_cuts_json_content_but_never_a_tool_call(engine, spec):
    grammar = GrammarSpec("json_schema", schema=BOUNDED_SCHEMA)
    cut = await run(engine, generation(spec, grammar=grammar, stop=['"ok"'], max_tokens=120))
    call = await run(
        engine, generation(spec, messages=QUESTION, grammar=forced(choice="add"), stop=['"', "add"], max_tokens=120)
    )

    assert cut.last["finish_reason"] == "stop"
    assert cut.text.startswith('{"name": "') and '"ok"' not in cut.text
    assert call.last["finish_reason"] == "tool_calls"
    assert [name for _, name, _ in calls_of(call)] == ["add"]


# ---- forced tool calls -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tool_model_dir", "text_marker_tool_model_dir", "tiny_model_dir"])
@pytest.mark.parametrize("choice", [None, "get_weather"])
async def test_a_forced_call_is_valid_for_its_tool_on_models_with_and_without_tool_templates(
    engine, request, model, choice
):
    spec = spec_of(request.getfixturevalue(model))

    outcome = await run(
        engine, generation(spec, messages=QUESTION, tools=list(TOOLS), grammar=forced(choice=choice), max_tokens=120)
    )

    assert outcome.last["finish_reason"] == "tool_calls"
    (call,) = calls_of(outcome)
    assert choice is None or call[1] == choice
    assert_valid_call(call[1], call[2])
    assert outcome.text == ""  # a forced answer is calls only


async def test_parallel_calls_are_all_valid_and_a_model_that_may_stop_after_one_does(engine, tool_model_dir):
    from mlx_lm.utils import load_tokenizer

    spec = spec_of(tool_model_dir)
    (eos,) = load_tokenizer(tool_model_dir).eos_token_ids
    wants_to_stop = SamplingParams(temperature=0.0, logit_bias={eos: 50.0})  # EOS wins wherever it is allowed

    several = await run(engine, generation(spec, messages=QUESTION, grammar=forced(parallel=True), max_tokens=200))
    one = await run(
        engine,
        generation(spec, messages=QUESTION, grammar=forced(parallel=True), sampling=wants_to_stop, max_tokens=200),
    )

    assert several.last["finish_reason"] == "length"  # a random model goes on calling
    complete = calls_of(several)
    assert len(complete) >= 3
    for _, name, arguments in complete[:-1]:  # the last may be cut short by max_tokens
        assert_valid_call(name, arguments)
    assert len({call_id for call_id, _, _ in complete}) == len(complete)
    assert one.last["finish_reason"] == "tool_calls"
    assert len(calls_of(one)) == 1


async def test_without_tool_choice_a_model_without_tool_support_answers_in_text(engine, spec):
    plain = await run(engine, generation(spec, messages=QUESTION))
    offered = await run(engine, generation(spec, messages=QUESTION, tools=list(TOOLS)))

    assert calls_of(offered) == []
    assert offered.text == plain.text and offered.text
    assert offered.last["prompt_tokens"] == plain.last["prompt_tokens"]  # no tools in its prompt


async def test_a_limit_on_calls_ends_the_answer_after_its_last_call(engine, tool_model_dir):
    """parallel_tool_calls false with tool_choice auto: the answer ends once one call is made, however many
    more the model would write (here a grammar that would let a random model go on calling)."""
    spec = spec_of(tool_model_dir)
    limited = generation(spec, messages=QUESTION, grammar=forced(parallel=True), max_tokens=200, max_tool_calls=1)

    outcome = await run(engine, limited)

    [(_, name, arguments)] = calls_of(outcome)
    assert_valid_call(name, arguments)
    assert outcome.last["finish_reason"] == "tool_calls"
    assert outcome.last["completion_tokens"] < 200


async def test_a_marker_that_starts_no_call_comes_back_as_text_and_tool_choice_none_parses_nothing(
    engine, tool_model_dir
):
    spec = spec_of(tool_model_dir)
    marker = SamplingParams(temperature=0.0, logit_bias={512: 100.0})  # `<tool_call>`, over and over

    auto = await run(engine, generation(spec, messages=QUESTION, tools=list(TOOLS), sampling=marker, max_tokens=6))
    none = await run(engine, generation(spec, messages=QUESTION, sampling=marker, max_tokens=6))

    for outcome in (auto, none):
        assert outcome.kinds[0] == "accepted" and outcome.last["finish_reason"] == "length"
        assert calls_of(outcome) == []
        assert outcome.text == "<tool_call>" * 6


# ---- the shared batch --------------------------------------------------------------------


async def test_unconstrained_requests_in_a_mixed_batch_get_what_they_get_alone(make_engine, spec):
    solo_engine = make_engine()
    alone = [await run(solo_engine, generation(spec, prompt=prompt, max_tokens=24)) for prompt in PROMPTS]

    # Queued before the engine thread starts: all eight are admitted into one batch.
    shared = make_engine(start=False)
    client = InProcessEngineClient(engine=shared)
    grammar = GrammarSpec("json_schema", schema=BOUNDED_SCHEMA)
    streams = []
    for prompt in PROMPTS:
        streams.append(client.open(generation(spec, prompt=prompt + " in json", grammar=grammar, max_tokens=120)))
        streams.append(client.open(generation(spec, prompt=prompt, max_tokens=24)))
    shared.start()
    outcomes = await asyncio.gather(*(collect(stream) for stream in streams))

    constrained, plain = outcomes[0::2], outcomes[1::2]
    for outcome, single in zip(plain, alone, strict=True):
        assert outcome.last["finish_reason"] == "length"
        assert outcome.last["completion_tokens"] == 24
        assert outcome.text == single.text
    for outcome in constrained:
        assert outcome.last["finish_reason"] == "stop"
        assert schema_errors(json.loads(outcome.text), BOUNDED_SCHEMA) == []


# ---- errors and refusals -----------------------------------------------------------------


async def test_a_grammar_that_fails_while_decoding_ends_its_request_with_an_error(engine, spec, monkeypatch):
    real_matcher = GrammarCache.matcher

    def broken_matcher(self: GrammarCache, **options: Any) -> Any:
        matcher = real_matcher(self, **options)
        matcher.consume_token(self.tokenizer.tokenize_str("x")[0])  # JSON never starts with x: error state
        return matcher

    monkeypatch.setattr(GrammarCache, "matcher", broken_matcher)
    failed = await run(engine, generation(spec, grammar=GrammarSpec("json_object")))
    monkeypatch.undo()
    served = await run(engine, generation(spec, grammar=GrammarSpec("json_object"), max_tokens=4))

    assert failed.last["type"] == "error"
    assert (failed.last["status"], failed.last["code"]) == (500, "grammar_error")
    assert served.last["type"] == "finish"
    assert engine.alive


async def test_a_schema_the_engine_cannot_enforce_is_refused_with_400(engine, spec):
    refused = await run(engine, generation(spec, grammar=GrammarSpec("json_schema", schema={"uniqueItems": True})))

    assert refused.kinds == ["error"]
    assert (refused.last["status"], refused.last["param"]) == (400, "response_format")
    assert "uniqueItems" in refused.last["message"]


async def test_a_vision_model_refuses_a_grammar(engine, tmp_path_factory):
    from tests.model_builders import build_tiny_paligemma

    folder = build_tiny_paligemma(tmp_path_factory.mktemp("vision") / "paligemma")
    vision: ModelSpec = {**spec_of(folder), "kind": "vision"}
    messages = [{"role": "user", "content": "describe"}]

    refused = await run(engine, generation(vision, messages=messages, grammar=GrammarSpec("json_object")))
    tools = await run(engine, generation(vision, messages=messages, grammar=forced()))

    assert refused.kinds == ["error"]
    assert (refused.last["status"], refused.last["code"], refused.last["param"]) == (
        400,
        "grammar_not_supported",
        "response_format",
    )
    assert tools.last["param"] == "tool_choice"


# ---- token counts ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tool_model_dir", "tiny_model_dir"])
async def test_counted_prompt_tokens_equal_the_served_ones_with_tools(engine, request, model):
    spec = spec_of(request.getfixturevalue(model))
    asked = generation(spec, messages=QUESTION, tools=list(TOOLS), grammar=forced(), sampling=GREEDY, max_tokens=60)

    served = await run(engine, asked)

    assert served.events[0]["prompt_tokens"] == count_prompt_tokens(asked) > 200
    # The grammar's forced prefix is generated text: it counts as completion tokens.
    assert served.last["completion_tokens"] > 10
