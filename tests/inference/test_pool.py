"""The model pool driven directly: single-flight loads, one memory budget, LRU eviction, pinning, idle TTL, unload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference.engine.engine import Engine
from inference.engine.local import InProcessEngineClient
from inference.engine.pool import active_memory, free_unused_memory
from inference.engine.types import ModelSpec, SamplingParams
from inference.runtime import engine_config
from tests.inference.engine_kit import collect, generation, run, settled


def spec_of(path: Path, **extra: Any) -> ModelSpec:
    return {"key": str(path), "path": str(path), "context_length": None, **extra}  # type: ignore[typeddict-item]


def model_bytes(path: Path) -> int:
    return (path / "model.safetensors").stat().st_size


@pytest.fixture(scope="module")
def resident_bytes(three_models: list[Path]) -> int:
    """What one loaded copy really holds on this process's kernel path (float32 doubles bfloat16)."""
    engine = Engine(engine_config())
    engine.start()
    try:
        return int(engine.preload(spec_of(three_models[0])).result(timeout=60)["weights_bytes"])
    finally:
        engine.stop()


def budget_for(models: float, resident: int) -> int:
    """Room for ``models`` loaded copies on top of what this process already holds."""
    free_unused_memory()
    return active_memory() + int(models * resident) + 2 * 2**20  # KV caches of short prompts


def loaded(engine: Engine) -> set[str]:
    return {key for key, model in engine.stats()["models"].items() if model["state"] == "loaded"}


async def test_twenty_concurrent_first_requests_share_one_load(make_engine: Callable[..., Engine], three_models):
    engine = make_engine()
    spec = spec_of(three_models[0])
    client = InProcessEngineClient(engine=engine)

    outcomes = await asyncio.gather(*(collect(client.open(generation(spec, max_tokens=2))) for _ in range(20)))

    assert [outcome.last["type"] for outcome in outcomes] == ["finish"] * 20
    stats = await settled(engine, spec["key"])
    assert stats["models"][spec["key"]]["loads"] == 1


async def test_a_round_robin_over_three_models_under_a_budget_for_two_evicts_only_what_it_must(
    make_engine: Callable[..., Engine], three_models, resident_bytes
):
    engine = make_engine(memory_budget=budget_for(2.5, resident_bytes), prefix_cache_bytes=0)
    specs = [spec_of(path) for path in three_models]

    for _ in range(3):
        for spec in specs:
            outcome = await run(engine, generation(spec, max_tokens=2))
            assert outcome.last["type"] == "finish", outcome.last

    stats = engine.stats()
    # a, b load; c evicts a (LRU), a evicts b, b evicts c …: every request after the second forces one eviction.
    assert stats["evictions"] == 7
    assert sum(stats["models"][spec["key"]]["loads"] for spec in specs) == 9
    assert len(loaded(engine)) == 2
    assert stats["memory"]["active_bytes"] <= stats["memory"]["budget_bytes"]


async def test_a_model_used_again_is_kept_and_the_least_recently_used_one_goes(
    make_engine: Callable[..., Engine], three_models, resident_bytes
):
    engine = make_engine(memory_budget=budget_for(2.5, resident_bytes), prefix_cache_bytes=0)
    a, b, c = (spec_of(path) for path in three_models)

    for spec in (a, b, a, c):  # a was used after b: b is the one to go
        assert (await run(engine, generation(spec, max_tokens=2))).last["type"] == "finish"

    assert loaded(engine) == {a["key"], c["key"]}
    assert engine.stats()["evictions"] == 1


async def test_a_pinned_model_is_never_evicted(make_engine: Callable[..., Engine], three_models, resident_bytes):
    engine = make_engine(memory_budget=budget_for(2.5, resident_bytes), prefix_cache_bytes=0)
    a, b, c = spec_of(three_models[0], pinned=True), spec_of(three_models[1]), spec_of(three_models[2])

    for spec in (a, b, c, b, c):
        assert (await run(engine, generation(spec, max_tokens=2))).last["type"] == "finish"

    stats = engine.stats()
    assert stats["models"][a["key"]]["state"] == "loaded"
    assert stats["models"][a["key"]]["loads"] == 1
    assert stats["models"][a["key"]]["evictions"] == 0
    assert stats["evictions"] == 3


async def test_a_model_that_cannot_fit_gets_503_with_retry_after_and_the_engine_carries_on(
    make_engine: Callable[..., Engine], three_models, resident_bytes
):
    engine = make_engine(memory_budget=budget_for(0.5, resident_bytes))
    refused = await run(engine, generation(spec_of(three_models[0]), max_tokens=2))

    assert refused.kinds == ["error"]
    assert refused.last["status"] == 503
    assert refused.last["code"] == "insufficient_memory"
    assert refused.last["retry_after"] > 0
    assert "budget" in refused.last["message"]
    assert loaded(engine) == set()
    assert engine.stats()["in_flight"][str(three_models[0])] == 0
    assert engine.alive


async def waiting_for_memory(engine: Engine, count: int) -> None:
    deadline = time.monotonic() + 30
    while engine.stats()["waiting_for_memory"] != count:
        assert time.monotonic() < deadline, engine.stats()
        await asyncio.sleep(0.02)


# A context far beyond the model's own: with NEVER_ENDING sampling, a generation that cannot end by itself.
ENDLESS = {"context_length": 10_000_000}
# Greedy, and the demo models' end-of-text ids ("</s>", "<|im_end|>") never picked.
NEVER_ENDING = SamplingParams(temperature=0.0, logit_bias={2: -100.0, 4: -100.0})


async def test_a_request_waits_for_a_busy_model_to_go_idle_then_loads(
    make_engine: Callable[..., Engine], three_models, resident_bytes
):
    engine = make_engine(memory_budget=budget_for(1.5, resident_bytes), prefix_cache_bytes=0, load_wait=60)
    a, b = spec_of(three_models[0], **ENDLESS), spec_of(three_models[1])
    client = InProcessEngineClient(engine=engine)
    long_running = client.open(generation(a, max_tokens=5_000_000, sampling=NEVER_ENDING))
    first = await long_running.next_event(timeout=30)
    assert first is not None and first["type"] == "accepted"

    waiting = asyncio.ensure_future(collect(client.open(generation(b, max_tokens=2))))
    await waiting_for_memory(engine, 1)  # b does not fit while a serves its request
    assert not waiting.done()

    long_running.cancel()
    served = await waiting

    assert served.last["type"] == "finish"
    assert loaded(engine) == {b["key"]}
    assert engine.stats()["waiting_for_memory"] == 0


async def test_a_waiting_request_gets_503_when_the_busy_model_stays_busy(
    make_engine: Callable[..., Engine], three_models, resident_bytes
):
    engine = make_engine(memory_budget=budget_for(1.5, resident_bytes), prefix_cache_bytes=0, load_wait=0.5)
    a, b = spec_of(three_models[0], **ENDLESS), spec_of(three_models[1])
    client = InProcessEngineClient(engine=engine)
    long_running = client.open(generation(a, max_tokens=5_000_000, sampling=NEVER_ENDING))
    assert (await long_running.next_event(timeout=30))["type"] == "accepted"

    refused = await collect(client.open(generation(b, max_tokens=2)))
    long_running.cancel()

    assert refused.last["code"] == "insufficient_memory"
    assert refused.last["status"] == 503
    assert refused.last["retry_after"] > 0


async def test_an_idle_model_unloads_after_its_ttl_and_a_pinned_one_stays(
    make_engine: Callable[..., Engine], three_models
):
    engine = make_engine()
    short, pinned = spec_of(three_models[0], idle_ttl=0.5), spec_of(three_models[1], idle_ttl=0.5, pinned=True)
    for spec in (short, pinned):
        assert (await run(engine, generation(spec, max_tokens=2))).last["type"] == "finish"

    deadline = time.monotonic() + 10
    while short["key"] in loaded(engine) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    assert loaded(engine) == {pinned["key"]}
    assert engine.stats()["models"][short["key"]]["state"] == "unloaded"


async def test_unloading_a_busy_model_is_refused_unless_forced_and_forcing_ends_its_requests(
    make_engine: Callable[..., Engine], three_models
):
    engine = make_engine()
    spec = spec_of(three_models[0], **ENDLESS)
    client = InProcessEngineClient(engine=engine)
    stream = client.open(generation(spec, max_tokens=5_000_000, sampling=NEVER_ENDING))
    assert (await stream.next_event(timeout=30))["type"] == "accepted"

    with pytest.raises(Exception, match="in flight") as refused:
        engine.unload(spec["key"]).result(timeout=30)
    assert getattr(refused.value, "status", None) == 409

    assert engine.unload(spec["key"], force=True).result(timeout=30) == {"state": "unloaded"}
    ended = await collect(stream)
    assert ended.last["type"] == "error"
    assert ended.last["code"] == "model_unloaded"
    assert loaded(engine) == set()
    assert engine.stats()["in_flight"][spec["key"]] == 0


async def test_preload_loads_once_and_reports_the_measured_weights(make_engine: Callable[..., Engine], three_models):
    engine = make_engine()
    spec = spec_of(three_models[0])

    first = engine.preload(spec).result(timeout=60)
    again = engine.preload(spec).result(timeout=60)

    assert first["state"] == again["state"] == "loaded"
    assert again["loads"] == 1
    # Measured from the arrays: what the file holds less its header, twice that when served as float32.
    factor = 2 if first.get("weights_dtype") == "float32" else 1
    assert (
        0.9 * factor * model_bytes(three_models[0]) <= first["weights_bytes"] <= factor * model_bytes(three_models[0])
    )


async def test_requests_queued_behind_a_failed_load_get_its_error_without_loading_again(
    make_engine: Callable[..., Engine], tmp_path: Path
):
    engine = make_engine()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # no weights: the load fails
    spec = spec_of(broken)
    client = InProcessEngineClient(engine=engine)

    outcomes = await asyncio.gather(*(collect(client.open(generation(spec, max_tokens=2))) for _ in range(10)))

    assert all(outcome.kinds == ["error"] for outcome in outcomes)
    assert {outcome.last["code"] for outcome in outcomes} == {"model_load_failed"}
    assert all(outcome.last["retry_after"] > 0 for outcome in outcomes)
    assert str(tmp_path) not in outcomes[0].last["message"]  # the client is not told server paths
    stats = engine.stats()
    assert stats["models"][spec["key"]]["load_failures"] == 1
    assert stats["models"][spec["key"]]["state"] == "unloaded"
    assert stats["in_flight"][spec["key"]] == 0
