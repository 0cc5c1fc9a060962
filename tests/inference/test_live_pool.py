"""The model pool through the server: a budget that fits two of three models, single-flight loads, load state,
and a load that cannot fit — all with the official openai client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import LiveHub, start_hub, stop_hub

pytestmark = pytest.mark.live
NAMES = ("pool-a", "pool-b", "pool-c")
# The demo models' end-of-text ids ("</s>", "<|im_end|>"): random weights pick them now and then.
NO_END_OF_TEXT = {"2": -100, "4": -100}


def engine_stats(hub: LiveHub) -> dict[str, Any]:
    with hub.client() as client:
        return client.get("/v1/engine").json()


@pytest.fixture(scope="module")
def pool_hub(tmp_path_factory: pytest.TempPathFactory, three_models: list[Path]) -> Iterator[LiveHub]:
    """A server whose memory budget holds what it already has plus two and a half of the three models.

    One model's resident size depends on the kernel path the server runs (float32 doubles bfloat16), so a
    first start measures it; the second start gets the budget.
    """
    home = tmp_path_factory.mktemp("pool-hub")
    probe = start_hub(home)
    try:
        for name, path in zip(NAMES, three_models, strict=True):
            probe.manage("register_model", str(path), "--name", name)
        client = openai.OpenAI(base_url=f"{probe.base_url}/v1", api_key=probe.api_key, max_retries=0)
        client.completions.create(model=NAMES[0], prompt="hello", max_tokens=1)
        stats = engine_stats(probe)
    finally:
        stop_hub(probe)
    resident = stats["models"][NAMES[0]]["weights_bytes"]
    others = stats["memory"]["active_bytes"] - resident
    budget = others + int(2.5 * resident)  # half a model of room for KV caches
    hub = start_hub(home, MLXHUB_MEMORY_BUDGET=str(budget), MLXHUB_LOAD_WAIT_SECONDS="1")
    yield hub
    stop_hub(hub)


@pytest.fixture(scope="module")
def pool_client(pool_hub: LiveHub) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{pool_hub.base_url}/v1", api_key=pool_hub.api_key, max_retries=0, timeout=120)


def states(client: openai.OpenAI) -> dict[str, tuple[str, int]]:
    return {
        model.id: (model.model_extra["state"], model.model_extra["memory_bytes"])
        for model in client.models.list()
        if model.id in NAMES
    }


def test_a_round_robin_over_three_models_completes_with_only_the_evictions_the_budget_forces(
    pool_hub, pool_client, three_models
):
    before = engine_stats(pool_hub)["evictions"]

    for _ in range(3):
        for name in NAMES:
            answer = pool_client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "hello"}], max_tokens=2, temperature=0
            )
            assert answer.choices[0].finish_reason == "length"  # greedy: the random model never picks EOS

    stats = engine_stats(pool_hub)
    # Two models fit: after the first two loads every request names the model evicted longest ago.
    assert stats["evictions"] - before == 7
    assert stats["memory"]["active_bytes"] <= stats["memory"]["budget_bytes"]
    listed = states(pool_client)
    assert sorted(state for state, _ in listed.values()) == ["loaded", "loaded", "unloaded"]
    assert all(memory > 0 for state, memory in listed.values() if state == "loaded")
    assert all(memory == 0 for state, memory in listed.values() if state == "unloaded")


def test_twenty_concurrent_first_requests_for_an_unloaded_model_cause_one_load(pool_hub, pool_client, three_models):
    unloaded = next(name for name, (state, _) in states(pool_client).items() if state == "unloaded")
    loads_before = engine_stats(pool_hub)["models"][unloaded]["loads"]
    client = openai.AsyncOpenAI(base_url=f"{pool_hub.base_url}/v1", api_key=pool_hub.api_key, max_retries=0)

    async def twenty() -> list[Any]:
        return await asyncio.gather(
            *(
                client.completions.create(model=unloaded, prompt=f"request {i}", max_tokens=2, temperature=0)
                for i in range(20)
            )
        )

    answers = asyncio.run(twenty())

    assert len(answers) == 20
    assert all(answer.choices[0].finish_reason == "length" for answer in answers)
    assert engine_stats(pool_hub)["models"][unloaded]["loads"] - loads_before == 1
    assert states(pool_client)[unloaded][0] == "loaded"


def test_a_load_that_cannot_fit_while_both_resident_models_are_busy_is_a_503_with_retry_after(pool_hub, pool_client):
    *busy, other = NAMES
    # Generations that cannot end during the test, however fast the kernels: no end-of-text token, and a
    # context far beyond the model's own (loaded afresh so the engine takes it).
    pool_hub.manage("shell", "-c", "from catalog.models import Profile; "
                    f"Profile.objects.filter(name__in={busy!r}).update(context_length=10_000_000)")  # fmt: skip
    with pool_hub.client() as http:
        for name in busy:
            http.post(f"/api/models/{name}/unload", json={"force": True}).raise_for_status()
    for name in busy:  # these two resident (the third evicted if it was)
        pool_client.completions.create(model=name, prompt="hi", max_tokens=1)
    streams: list[Any] = []
    for name in busy:  # endless generations keep both resident models busy, so neither may be evicted
        stream = pool_client.completions.create(
            model=name, prompt="keep going", max_tokens=5_000_000, stream=True, logit_bias=NO_END_OF_TEXT
        )
        next(iter(stream))
        streams.append(stream)
    try:
        with pool_hub.client() as http:
            response = http.post("/v1/completions", json={"model": other, "prompt": "hi", "max_tokens": 2})
        with pytest.raises(openai.InternalServerError) as caught:
            pool_client.completions.create(model=other, prompt="hi", max_tokens=2)
        assert states(pool_client)[other][0] == "unloaded"
    finally:
        for stream in streams:
            stream.close()

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "insufficient_memory"
    assert caught.value.status_code == 503
    # Nothing broke: once the server has seen the streams' clients leave, their models go idle and the
    # third loads (the engine frees a slot within a decode step of noticing; allow for the noticing).
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = pool_client.completions.create(model=other, prompt="hi", max_tokens=2, temperature=0)
            break
        except openai.InternalServerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert answer.choices[0].finish_reason == "length"
