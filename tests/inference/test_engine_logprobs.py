"""Log-probabilities, several choices and prompt scoring, on the engine alone, against an independent
forward pass of the same model (mlx_lm's own, outside the batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.engine.types import ModelSpec, SamplingParams
from tests.inference.engine_kit import run, settled

# The batch computes its rows in the model's dtype (bfloat16): a value of about -6 is good to ~0.03.
TOLERANCE = 0.1
PROMPT_TOKENS = [5, 17, 42, 99, 7, 230, 64, 12]


@pytest.fixture
def spec(tiny_model_dir: Path) -> ModelSpec:
    return {"key": str(tiny_model_dir), "path": str(tiny_model_dir), "context_length": None}


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> Any:
    """log_softmax rows for a token list, computed with a plain forward pass in float32."""
    import mlx.core as mx
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(tiny_model_dir))[:2]

    def rows(tokens: list[int]) -> Any:
        logits = model(mx.array(tokens)[None])[0].astype(mx.float32)
        return logits - mx.logsumexp(logits, axis=-1, keepdims=True)

    rows.tokenizer = tokenizer  # type: ignore[attr-defined]
    return rows


def entries_of(events: list[dict[str, Any]], choice: int = 0) -> list[dict[str, Any]]:
    own = [event for event in events if event.get("choice", 0) == choice]
    return [
        entry
        for event in own
        if event["type"] in ("delta", "finish", "choice_end")
        for entry in event.get("logprobs", [])
    ]


def text_of(events: list[dict[str, Any]], choice: int = 0) -> str:
    own = [event for event in events if event.get("choice", 0) == choice]
    return "".join(event["text"] for event in own if event["type"] in ("delta", "finish", "choice_end"))


def generation(spec: ModelSpec, **fields: Any) -> Any:
    from tests.inference.engine_kit import generation as make

    fields.setdefault("prompt_tokens", PROMPT_TOKENS)
    return make(spec, **fields)


async def test_generated_logprobs_equal_an_independent_forward_pass(engine, spec, reference):
    outcome = await run(engine, generation(spec, max_tokens=8, logprobs=5))
    entries = entries_of(outcome.events)
    assert len(entries) == 8
    assert "".join(entry["text"] for entry in entries) == outcome.text
    tokens = list(PROMPT_TOKENS)
    for entry in entries:
        row = reference(tokens)[-1]
        chosen = int(row.argmax().item())
        assert entry["logprob"] == pytest.approx(row[chosen].item(), abs=TOLERANCE)
        assert len(entry["top"]) == 5
        best = sorted(row.tolist(), reverse=True)[:5]
        assert [value for _, value in entry["top"]] == pytest.approx(best, abs=TOLERANCE)
        # Greedy: the chosen token is the best one (its value is the top value, exactly).
        assert entry["logprob"] == entry["top"][0][1]
        tokens.append(chosen)
    await settled(engine, spec["key"])


async def test_a_request_without_logprobs_gets_none(engine, spec):
    outcome = await run(engine, generation(spec, max_tokens=4))
    assert all("logprobs" not in event for event in outcome.events)


async def test_echo_with_max_tokens_0_scores_the_prompt_without_generating(engine, spec, reference):
    outcome = await run(engine, generation(spec, max_tokens=0, echo=True, logprobs=1))
    assert outcome.kinds == ["accepted", "delta", "choice_end", "finish"]
    entries = entries_of(outcome.events)
    assert len(entries) == len(PROMPT_TOKENS)
    assert entries[0]["logprob"] is None and entries[0]["top"] is None
    rows = reference(PROMPT_TOKENS)
    for position, entry in enumerate(entries[1:], start=1):
        assert entry["logprob"] == pytest.approx(rows[position - 1][PROMPT_TOKENS[position]].item(), abs=TOLERANCE)
        assert entry["top"][0][1] == pytest.approx(rows[position - 1].max().item(), abs=TOLERANCE)
    tokenizer = reference.tokenizer
    assert text_of(outcome.events) == tokenizer.decode(PROMPT_TOKENS)
    assert outcome.last["prompt_tokens"] == len(PROMPT_TOKENS)
    assert outcome.last["completion_tokens"] == 0
    await settled(engine, spec["key"])


async def test_echo_with_one_token_continues_after_the_prompt(engine, spec):
    outcome = await run(engine, generation(spec, max_tokens=1, echo=True, logprobs=1))
    entries = entries_of(outcome.events)
    assert len(entries) == len(PROMPT_TOKENS) + 1  # what lm-eval slices with [ctxlen:-1]
    assert "".join(entry["text"] for entry in entries) == text_of(outcome.events)
    assert outcome.last["completion_tokens"] == 1


async def test_n_choices_are_indexed_sum_their_usage_and_a_seed_reproduces_them(engine, spec):
    sampling = SamplingParams(temperature=1.0, seed=1234)
    first = await run(engine, generation(spec, max_tokens=6, n=3, sampling=sampling))
    second = await run(engine, generation(spec, max_tokens=6, n=3, sampling=sampling))
    ends = [event for event in first.events if event["type"] == "choice_end"]
    assert sorted(event["choice"] for event in ends) == [0, 1, 2]
    assert first.last["choices"] == 3
    assert first.last["prompt_tokens"] == len(PROMPT_TOKENS)  # counted once
    assert first.last["completion_tokens"] == 18
    texts = [text_of(first.events, choice) for choice in range(3)]
    assert texts == [text_of(second.events, choice) for choice in range(3)]
    assert len(set(texts)) > 1  # each choice samples its own stream
    await settled(engine, spec["key"])


async def test_n_choices_share_one_prefill_through_the_prefix_cache(engine, spec):
    long_prompt = list(range(3, 200))
    outcome = await run(engine, generation(spec, prompt_tokens=long_prompt, max_tokens=2, n=4))
    assert outcome.kinds.count("choice_end") == 4
    assert outcome.events[0]["prompt_tokens"] == len(long_prompt)
    stats = await settled(engine, spec["key"])
    assert stats["models"][spec["key"]]["active_requests"] == 0


async def test_several_prompts_get_one_choice_each_in_order(engine, spec, reference):
    prompts: list[str | list[int]] = [[5, 6, 7], [8, 9, 10, 11], "once upon"]
    outcome = await run(
        engine, generation(spec, prompt_tokens=None, prompts=prompts, max_tokens=0, echo=True, logprobs=0)
    )
    tokenizer = reference.tokenizer
    assert text_of(outcome.events, 0) == tokenizer.decode([5, 6, 7])
    assert text_of(outcome.events, 1) == tokenizer.decode([8, 9, 10, 11])
    assert len(entries_of(outcome.events, 1)) == 4
    assert outcome.last["prompt_tokens"] == 3 + 4 + len(tokenizer.encode("once upon"))


async def test_a_cancelled_request_of_several_choices_ends_them_all(engine, spec):
    from inference.engine.local import InProcessEngineClient

    stream = InProcessEngineClient(engine=engine).open(generation(spec, max_tokens=400, n=3))
    first = await stream.next_event(30)
    assert first is not None and first["type"] == "accepted"
    stream.cancel()
    stats = await settled(engine, spec["key"])  # every choice left the batch, and the slot came back once
    assert stats["models"][spec["key"]]["active_requests"] == 0
    assert (await run(engine, generation(spec, max_tokens=2, n=2))).last["choices"] == 2


async def test_the_values_are_taken_after_logit_bias(engine, spec):
    biased = SamplingParams(temperature=0.0, logit_bias={77: 100.0})
    outcome = await run(engine, generation(spec, max_tokens=3, logprobs=1, sampling=biased))
    entries = entries_of(outcome.events)
    assert [entry["logprob"] for entry in entries] == pytest.approx([0.0] * 3, abs=1e-3)  # the bias made it certain


async def test_a_stop_string_cuts_the_listed_tokens_to_the_text(engine, spec):
    free = await run(engine, generation(spec, max_tokens=12, logprobs=0))
    text = free.text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip()
    outcome = await run(engine, generation(spec, max_tokens=12, logprobs=0, stop=[stop]))
    assert outcome.last["finish_reason"] == "stop"
    assert "".join(entry["text"] for entry in entries_of(outcome.events)) == outcome.text == text[: text.index(stop)]
