"""Continuous batching seen from outside: streams overlap, a client that leaves frees its slot, a full queue 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import LiveHub, start_hub, stop_hub
from tests.inference.wire import logged

pytestmark = pytest.mark.live


def engine_stats(live_hub: LiveHub) -> dict:
    response = httpx.get(
        f"{live_hub.base_url}/v1/engine", headers={"Authorization": f"Bearer {live_hub.api_key}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def in_flight(live_hub: LiveHub, model_dir) -> int:
    return engine_stats(live_hub)["models"]["demo"]["in_flight"]


def wait_until_idle(live_hub: LiveHub, model_dir, timeout: float) -> float:
    """Seconds until the model has nothing in flight; fails after `timeout`."""
    started = time.monotonic()
    while in_flight(live_hub, model_dir) != 0:
        assert time.monotonic() - started < timeout, f"still in flight after {timeout}s: {engine_stats(live_hub)}"
        time.sleep(0.05)
    return time.monotonic() - started


async def test_eight_concurrent_streams_all_finish_and_overlap_in_time(async_openai_client):
    async def one_stream(index: int) -> tuple[float, float, str | None, int]:
        stream = await async_openai_client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": f"story number {index}"}],
            max_tokens=48,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        first = last = 0.0
        finish_reason, completion_tokens = None, 0
        async for chunk in stream:
            last = time.monotonic()
            first = first or last
            if chunk.choices and chunk.choices[0].finish_reason:
                finish_reason = chunk.choices[0].finish_reason
            if chunk.usage:
                completion_tokens = chunk.usage.completion_tokens
        return first, last, finish_reason, completion_tokens

    results = await asyncio.gather(*(one_stream(index) for index in range(8)))

    assert [(reason, tokens) for _, _, reason, tokens in results] == [("length", 48)] * 8
    latest_first = max(first for first, _, _, _ in results)
    earliest_last = min(last for _, last, _, _ in results)
    # Every stream had started before any finished: they decoded together, not one after another.
    assert latest_first < earliest_last


STREAMS_TO_ABANDON = {
    "/v1/completions": {"prompt": "a very long story"},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "a very long story"}]},
}


def test_a_client_that_disconnects_mid_stream_frees_its_slot(live_hub, demo_model_dir):
    # Several rounds: the server must notice a close whenever it lands, also between two tokens of the stream.
    for _round in range(3):
        for path, prompt in STREAMS_TO_ABANDON.items():
            assert in_flight(live_hub, demo_model_dir) == 0
            steps_before = engine_stats(live_hub)["steps"]
            body = {"model": "demo", "max_tokens": 1900, "temperature": 0, "stream": True, **prompt}
            with live_hub.client() as client, client.stream("POST", path, json=body) as response:
                assert response.status_code == 200
                events = (line for line in response.iter_lines() if line.startswith("data: "))
                for _ in range(3):
                    assert next(events) != "data: [DONE]"
                assert in_flight(live_hub, demo_model_dir) == 1
            # Closed: the server must cancel; decoding all 1900 tokens would take many seconds.
            wait_until_idle(live_hub, demo_model_dir, timeout=5)
            assert engine_stats(live_hub)["steps"] - steps_before < 1000


def test_a_client_that_disconnects_before_a_whole_completion_frees_its_slot(live_hub, demo_model_dir):
    assert in_flight(live_hub, demo_model_dir) == 0
    steps_before = engine_stats(live_hub)["steps"]
    body = {"model": "demo", "prompt": "another very long story", "max_tokens": 1900, "temperature": 0}
    headers = {"Authorization": f"Bearer {live_hub.api_key}"}
    # The tiny model decodes well over a thousand tokens a second here: the client leaves after a fraction
    # of the 1900, so a server that went on decoding for nobody shows in the step count.
    with (
        httpx.Client(base_url=live_hub.base_url, headers=headers, timeout=0.3) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/completions", json=body)

    wait_until_idle(live_hub, demo_model_dir, timeout=5)
    assert engine_stats(live_hub)["steps"] - steps_before < 1000


@pytest.fixture(scope="module")
def single_slot_hub(live_hub: LiveHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A second server that runs one request per model and queues none; it reuses the built demo model."""
    hub = start_hub(
        tmp_path_factory.mktemp("single-slot-hub"),
        MLXHUB_MAX_BATCH="1",
        MLXHUB_MAX_QUEUE="0",
        MLXHUB_MODELS_DIR=str(live_hub.home / "models"),
    )
    yield hub
    stop_hub(hub)


def test_a_full_queue_is_a_429_with_retry_after(single_slot_hub):
    client = openai.OpenAI(base_url=f"{single_slot_hub.base_url}/v1", api_key=single_slot_hub.api_key, max_retries=0)
    body = {"model": "demo", "prompt": "the one slot", "max_tokens": 1500, "temperature": 0, "stream": True}
    with single_slot_hub.client() as http, http.stream("POST", "/v1/completions", json=body) as holding:
        assert holding.status_code == 200
        # Keep the iterator: dropping a half-read httpx line iterator closes the response, and so the request.
        lines = holding.iter_lines()
        assert next(lines).startswith("data: ")  # admitted and decoding

        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "me too"}], max_tokens=2)
        raw = http.post("/v1/completions", json={"model": "demo", "prompt": "and me", "max_tokens": 2})

    assert caught.value.status_code == 429
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert raw.status_code == 429
    assert raw.json()["error"]["type"] == "rate_limit_error"
    assert raw.json()["error"]["code"] == "queue_full"
    messages = logged(single_slot_hub, request_id=raw.headers["x-request-id"], contains="queue_full")
    assert any(message.startswith("request refused: 429 queue_full") for message in messages)
    # The holder left; its slot is free again.
    deadline = time.monotonic() + 5
    while True:
        try:
            completion = client.completions.create(model="demo", prompt="now me", max_tokens=2, temperature=0)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the slot was not freed after the holder disconnected"
            time.sleep(0.1)
    assert completion.usage.completion_tokens == 2


def test_a_streaming_request_refused_for_a_full_queue_gets_a_429_not_a_stream(single_slot_hub):
    body = {"model": "demo", "prompt": "the one slot", "max_tokens": 1500, "temperature": 0, "stream": True}
    refused_body = {"model": "demo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": True}
    with single_slot_hub.client() as http, http.stream("POST", "/v1/completions", json=body) as holding:
        lines = holding.iter_lines()
        assert next(lines).startswith("data: ")
        refused = http.post("/v1/chat/completions", json=refused_body)

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.headers["retry-after"]
