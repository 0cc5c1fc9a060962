"""The engine driven directly (no Django, no HTTP) on the tiny random model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference.engine import text as text_runner_module
from inference.engine.local import InProcessEngineClient
from inference.engine.stops import StopStringMatcher
from inference.engine.types import EngineError, ModelSpec, SamplingParams
from tests.inference.engine_kit import GREEDY, WAIT_SECONDS, collect, generation, run, settled


@pytest.fixture
def spec(tiny_model_dir: Path) -> ModelSpec:
    return {"key": str(tiny_model_dir), "path": str(tiny_model_dir), "context_length": None}


# ---- stop strings -----------------------------------------------------------------


def test_the_matcher_passes_text_through_without_stop_strings():
    matcher = StopStringMatcher([])
    assert matcher.feed("hello") == ("hello", False)
    assert matcher.flush() == ""


def test_the_matcher_holds_back_a_tail_that_could_start_a_stop_string():
    matcher = StopStringMatcher(["lo w"])
    assert matcher.feed("Hel") == ("He", False)
    assert matcher.feed("lo wo") == ("l", True)


def test_the_matcher_releases_held_text_once_it_cannot_match():
    matcher = StopStringMatcher(["abc"])
    assert matcher.feed("xa") == ("x", False)
    assert matcher.feed("bd") == ("abd", False)
    assert matcher.feed("ab") == ("", False)
    assert matcher.flush() == "ab"
    assert matcher.flush() == ""


def test_the_earliest_stop_string_wins_and_empty_ones_are_ignored():
    matcher = StopStringMatcher(["", "world", "lo"])
    assert matcher.feed("hello world") == ("hel", True)


async def test_a_stop_string_across_a_token_boundary_is_never_emitted(engine, spec):
    free = await run(engine, generation(spec, max_tokens=32))
    deltas = [event["text"] for event in free.events if event["type"] == "delta"]
    full = free.text
    # A stop string made of the end of one token's text and the start of the next one's.
    for index in range(1, len(deltas) - 1):
        before, after = deltas[index], deltas[index + 1]
        if not before or not after:
            continue
        stop = before[-2:] + after[:2]
        boundary = len("".join(deltas[: index + 1]))
        if full.find(stop) == boundary - len(before[-2:]):
            break
    else:
        pytest.fail(f"no usable token boundary in {deltas!r}")
    expected = full[: full.find(stop)]

    stopped = await run(engine, generation(spec, max_tokens=32, stop=["zzz-never", stop]))

    assert stopped.last["type"] == "finish"
    assert stopped.last["finish_reason"] == "stop"
    assert stopped.text == expected
    assert stop not in stopped.text
    assert stopped.last["completion_tokens"] <= index + 2


# ---- sampling ---------------------------------------------------------------------


async def test_greedy_decoding_gives_the_same_text_every_time(engine, spec):
    first = await run(engine, generation(spec))
    second = await run(engine, generation(spec))  # served from the prefix cache
    together = await asyncio.gather(*(run(engine, generation(spec)) for _ in range(3)))

    assert first.kinds[0] == "accepted"
    assert first.last["finish_reason"] == "length"
    assert first.last["completion_tokens"] == 16
    assert first.text
    assert second.text == first.text
    assert [outcome.text for outcome in together] == [first.text] * 3


async def test_a_seeded_request_draws_the_same_tokens_alone_and_inside_a_shared_batch(make_engine, spec):
    seeded = SamplingParams(temperature=1.0, seed=1234)
    alone = await run(make_engine(), generation(spec, sampling=seeded, max_tokens=24))

    # Queued before the engine thread starts, so all three are admitted into the same batch.
    shared = make_engine(start=False)
    client = InProcessEngineClient(engine=shared)
    streams = [
        client.open(generation(spec, prompt="a different prompt", sampling=SamplingParams(temperature=1.0, seed=7))),
        client.open(generation(spec, sampling=seeded, max_tokens=24)),
        client.open(generation(spec, prompt="and another one", sampling=GREEDY)),
    ]
    shared.start()
    outcomes = await asyncio.gather(*(collect(stream) for stream in streams))
    other_seed = await run(shared, generation(spec, sampling=SamplingParams(temperature=1.0, seed=99), max_tokens=24))

    assert alone.last["completion_tokens"] == 24
    assert outcomes[1].text == alone.text
    assert other_seed.text != alone.text


# ---- admission, limits and failures -----------------------------------------------


async def test_cancelling_a_request_frees_its_slot_and_reports_what_it_produced(engine, spec):
    stream = InProcessEngineClient(engine=engine).open(generation(spec, max_tokens=1000))
    async with asyncio.timeout(WAIT_SECONDS):
        while (event := await stream.next_event()) is not None and event["type"] != "delta":
            pass
        stream.cancel()
        while (event := await stream.next_event()) is not None and event["type"] == "delta":
            pass

    assert event is not None
    assert event["type"] == "finish"
    assert event["finish_reason"] == "cancelled"
    assert 1 <= event["completion_tokens"] < 1000
    stats = await settled(engine, spec["key"])
    assert stats["models"][spec["key"]]["decoding"] == 0


async def test_a_full_queue_is_refused_with_429(make_engine, spec):
    engine = make_engine(max_batch=1, max_queue=1)
    client = InProcessEngineClient(engine=engine)
    streams = [client.open(generation(spec, max_tokens=1000)) for _ in range(2)]

    with pytest.raises(EngineError) as refused:
        client.open(generation(spec))

    assert refused.value.status == 429
    assert refused.value.code == "queue_full"
    for stream in streams:
        stream.cancel()
    await settled(engine, spec["key"])
    assert (await run(engine, generation(spec, max_tokens=2))).last["type"] == "finish"


async def test_a_prompt_longer_than_the_context_is_refused(engine, spec):
    small: ModelSpec = {"key": spec["key"], "path": spec["path"], "context_length": 32}

    too_long = await run(engine, generation(small, prompt_tokens=list(range(10, 50))))
    no_room = await run(engine, generation(small, prompt_tokens=list(range(10, 20)), max_tokens=30))

    assert too_long.kinds == ["error"]
    assert too_long.last["status"] == 400
    assert too_long.last["code"] == "context_length_exceeded"
    assert too_long.last["param"] == "prompt"
    assert no_room.last["code"] == "context_length_exceeded"
    assert no_room.last["param"] == "max_tokens"
    assert engine.stats()["in_flight"][spec["key"]] == 0


async def test_the_prefix_cache_reports_cached_tokens_for_a_repeated_prompt(engine, spec):
    messages = [{"role": "user", "content": "tell me everything about the river and the mountain " * 4}]

    first = await run(engine, generation(spec, messages=messages, max_tokens=4))
    again = await run(engine, generation(spec, messages=messages, max_tokens=4))

    assert first.events[0]["cached_tokens"] == 0
    prompt_tokens = first.last["prompt_tokens"]
    assert prompt_tokens > 40
    # Every token but the last comes from the cache: the last is recomputed for its logits.
    assert again.events[0]["cached_tokens"] == prompt_tokens - 1
    assert again.last["cached_tokens"] == prompt_tokens - 1
    assert again.text == first.text


async def test_the_engine_survives_token_ids_outside_the_vocabulary(engine, spec):
    refused = await run(engine, generation(spec, prompt_tokens=[5, 10**6, 7]))
    negative = await run(engine, generation(spec, prompt_tokens=[-1, 5]))
    served = await run(engine, generation(spec, max_tokens=4))

    assert refused.kinds == ["error"]
    assert refused.last["status"] == 400
    assert refused.last["code"] == "invalid_request_error"
    assert negative.kinds == ["error"]
    assert served.last["type"] == "finish"
    assert served.last["completion_tokens"] == 4
    assert engine.alive


async def test_the_engine_survives_a_request_that_fails_while_generating(engine, spec, monkeypatch):
    real_sampler = text_runner_module.make_request_sampler

    def sampler_for(params: SamplingParams) -> Callable[..., Any]:
        if params.seed != 666:
            return real_sampler(params)

        def broken(logprobs: Any) -> Any:
            raise RuntimeError("a sampler that fails")

        return broken

    monkeypatch.setattr(text_runner_module, "make_request_sampler", sampler_for)

    failed = await run(engine, generation(spec, sampling=SamplingParams(temperature=1.0, seed=666)))
    served = await run(engine, generation(spec, max_tokens=4))

    assert failed.last["type"] == "error"
    assert failed.last["status"] == 500
    assert failed.last["code"] == "engine_error"
    assert served.last["type"] == "finish"
    assert served.last["completion_tokens"] == 4
    assert engine.alive
    await settled(engine, spec["key"])
