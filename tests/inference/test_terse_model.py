"""The terse test model (``tests.model_builders.build_terse_model``): it ends its turns by itself, as designed,
and a grammar still decides where its structured turns end. The engine driven directly."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from inference.engine.types import GenerationRequest, GrammarSpec, ModelSpec, SamplingParams
from tests.inference import tool_kit
from tests.inference.engine_kit import GREEDY, generation, run
from tests.inference.test_constrained import QUESTION, assert_valid_call, calls_of, forced
from tests.inference.tool_kit import BOUNDED_SCHEMA, TOOLS, schema_errors
from tests.model_builders import TERSE_CONTEXT, TERSE_SILENT_LOGIT, TERSE_STOP_PROBABILITY

terse_model_dir = tool_kit.terse_model_dir  # fixture

PROMPTS = ["hi", "tell me a long story about the river and the boy " * 20, "what is 2 + 3?", "x"]
RANDOM = SamplingParams(temperature=1.0)


def turn(spec: ModelSpec, **fields: Any) -> GenerationRequest:
    """A turn of at most 64 tokens, sampled at temperature 1 unless told otherwise."""
    return generation(spec, **{"max_tokens": 64, "sampling": RANDOM, **fields})


@pytest.fixture
def spec(terse_model_dir: Path) -> ModelSpec:
    return {"key": str(terse_model_dir), "path": str(terse_model_dir), "context_length": None}


def test_every_position_of_every_prompt_gives_the_end_of_text_the_same_designed_odds(terse_model_dir):
    import mlx.core as mx
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(terse_model_dir))[:2]
    model.set_dtype(mx.float32)
    (eos,) = tokenizer.eos_token_ids
    config = json.loads((terse_model_dir / "config.json").read_text())

    for prompt in PROMPTS:
        logits = model(mx.array([tokenizer.encode(prompt)]))[0].astype(mx.float32)
        others = mx.concatenate([logits[:, :eos], logits[:, eos + 1 :]], axis=1)
        assert mx.allclose(logits, logits[:1], atol=1e-3).item()  # every position alike
        values = {round(value) for value in others[0].tolist()}  # bfloat16 rows: within 0.01
        assert values == {0.0, TERSE_SILENT_LOGIT}
        stop = mx.softmax(logits[-1])[eos].item()
        assert math.isclose(stop, TERSE_STOP_PROBABILITY, rel_tol=0.01)
    assert config["max_position_embeddings"] == TERSE_CONTEXT


async def test_at_temperature_one_its_turns_end_by_themselves_after_a_few_tokens(engine, spec):
    outcomes = await asyncio.gather(*(run(engine, turn(spec, prompt=prompt)) for prompt in PROMPTS * 4))

    lengths = [outcome.last["completion_tokens"] for outcome in outcomes]
    assert all(outcome.last["finish_reason"] == "stop" for outcome in outcomes), lengths
    # 1 / p = 4 tokens on average (the end-of-text counted); 16 turns average under 8 all but always.
    assert sum(lengths) / len(lengths) < 8, lengths


async def test_at_temperature_zero_it_ends_at_once(engine, spec):
    outcome = await run(engine, turn(spec, prompt="hello there", sampling=GREEDY))

    assert outcome.last["finish_reason"] == "stop"
    assert outcome.last["completion_tokens"] == 1 and outcome.text == ""


async def test_a_json_schema_and_a_forced_call_still_end_where_their_grammar_does(engine, spec):
    # The grammar's literals may be spelled in any tokens and the terse model picks among them uniformly, so
    # mostly in short ones: about 65 tokens each here.
    json_turn = await run(
        engine, turn(spec, prompt="a record", grammar=GrammarSpec("json_schema", schema=BOUNDED_SCHEMA), max_tokens=300)
    )
    call_turn = await run(engine, turn(spec, messages=QUESTION, tools=list(TOOLS), grammar=forced(), max_tokens=300))

    assert json_turn.last["finish_reason"] == "stop"
    assert schema_errors(json.loads(json_turn.text), BOUNDED_SCHEMA) == []
    assert call_turn.last["finish_reason"] == "tool_calls"
    ((_, name, arguments),) = calls_of(call_turn)
    assert_valid_call(name, arguments)
