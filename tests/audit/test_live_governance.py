"""Limits, audit rows and metrics against a live server, with the official openai client."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import uuid

import httpx
import openai
import pytest

from tests.conftest import LiveHub, start_hub, stop_hub

pytestmark = pytest.mark.live


def create_key(hub: LiveHub, **limits: object) -> tuple[int, str]:
    """A fresh key with the given limits, made through the control API with the admin's key."""
    with hub.client() as client:
        response = client.post("/api/keys/", json={"name": f"limited-{uuid.uuid4().hex[:6]}", **limits})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["secret"]


def key_usage(hub: LiveHub, key_id: int) -> dict[str, int]:
    with hub.client() as client:
        return client.get(f"/api/keys/{key_id}/").json()["usage"]


def audit_rows(hub: LiveHub, **filters: str) -> list[dict[str, object]]:
    with hub.client() as client:
        return client.get("/api/audit/", params={"limit": 1000, **filters}).json()["results"]


def wait_for_audit(hub: LiveHub, request_ids: set[str], timeout: float = 10) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = {row["request_id"]: row for row in audit_rows(hub) if row["request_id"] in request_ids}
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


async def fire(base_url: str, secret: str, count: int, *, max_tokens: int = 1) -> list[int]:
    """`count` chat requests at once; returns their status codes."""
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0, timeout=120)

    async def one(index: int) -> int:
        try:
            await client.chat.completions.create(
                model="demo",
                messages=[{"role": "user", "content": f"burst {index}"}],
                max_tokens=max_tokens,
                temperature=0,
            )
        except openai.RateLimitError as exc:
            assert exc.response.headers.get("retry-after")
            return 429
        return 200

    return await asyncio.gather(*(one(index) for index in range(count)))


def test_fifty_concurrent_requests_against_a_ten_per_minute_key_admit_exactly_ten(live_hub):
    _, secret = create_key(live_hub, rpm=10)

    statuses = asyncio.run(fire(live_hub.base_url, secret, 50))

    assert statuses.count(200) == 10
    assert statuses.count(429) == 40


def test_the_429_names_the_limit_and_says_when_to_retry(live_hub):
    _, secret = create_key(live_hub, rpm=1)
    client = openai.OpenAI(base_url=f"{live_hub.base_url}/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "one"}], max_tokens=1)

    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "two"}], max_tokens=1)

    body = excinfo.value.body
    assert body["code"] == "rate_limit_exceeded" and body["param"] == "rpm"
    assert "1 requests per minute" in body["message"]
    assert 1 <= int(excinfo.value.response.headers["retry-after"]) <= 61


def test_concurrent_streams_never_take_a_token_budget_past_its_end(live_hub):
    budget = 400
    key_id, secret = create_key(live_hub, token_budget=budget, budget_period="day")
    client = openai.AsyncOpenAI(base_url=f"{live_hub.base_url}/v1", api_key=secret, max_retries=0, timeout=120)

    async def stream(index: int) -> int:
        try:
            chunks = await client.chat.completions.create(
                model="demo",
                messages=[{"role": "user", "content": f"s{index}"}],
                max_tokens=60,
                stream=True,
                temperature=0,
            )
            async for _ in chunks:
                pass
        except openai.RateLimitError:
            return 429
        return 200

    async def run() -> list[int]:
        return await asyncio.gather(*(stream(index) for index in range(12)))

    statuses = asyncio.run(run())

    assert 200 in statuses and 429 in statuses
    usage = key_usage(live_hub, key_id)
    assert usage["concurrent"] == 0
    assert usage["budget_used"] <= budget
    deadline = time.monotonic() + 10
    while True:  # the audit writer flushes in the background
        rows = [row for row in audit_rows(live_hub) if row["status_code"] == 200 and row["key_prefix"] == secret[:12]]
        if len(rows) == statuses.count(200) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(rows) == statuses.count(200)
    used = sum(int(row["prompt_tokens"]) + int(row["completion_tokens"]) for row in rows)
    assert used == usage["budget_used"]  # settled to what was really used, not to what was reserved


def test_a_cancelled_stream_settles_to_what_it_really_produced(live_hub):
    key_id, secret = create_key(live_hub, token_budget=100_000)
    request_id = f"cancel-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {secret}", "x-request-id": request_id}
    body = {"model": "demo", "messages": [{"role": "user", "content": "long"}], "max_tokens": 1500, "stream": True}
    with (
        httpx.Client(base_url=live_hub.base_url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        received = [line for _, line in zip(range(6), response.iter_lines(), strict=False)]
    assert any(line.startswith("data: ") for line in received)

    row = wait_for_audit(live_hub, {request_id})[request_id]
    assert row["cancelled"] is True and row["streamed"] is True
    deadline = time.monotonic() + 10
    while (usage := key_usage(live_hub, key_id))["concurrent"] and time.monotonic() < deadline:
        time.sleep(0.2)
    produced = int(row["prompt_tokens"]) + int(row["completion_tokens"])
    assert usage["concurrent"] == 0
    assert usage["budget_used"] == produced
    assert 0 < int(row["completion_tokens"]) < 1500


def test_every_request_of_a_mixed_run_leaves_an_audit_row_without_its_text(live_hub):
    marker = f"secret-prompt-{uuid.uuid4().hex}"
    plan = {
        "ok": ({"model": "demo", "messages": [{"role": "user", "content": marker}], "max_tokens": 3}, 200),
        "ok-stream": (
            {"model": "demo", "messages": [{"role": "user", "content": marker}], "max_tokens": 3, "stream": True},
            200,
        ),
        "unknown-model": ({"model": "nope", "messages": [{"role": "user", "content": marker}]}, 404),
        "invalid": ({"model": "demo", "messages": [{"role": "user", "content": marker}], "max_tokens": -1}, 400),
    }
    request_ids = {}
    with live_hub.client() as client:
        for name, (body, expected) in plan.items():
            request_id = f"{name}-{uuid.uuid4().hex[:8]}"
            response = client.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})
            response.read()
            assert response.status_code == expected
            request_ids[request_id] = expected
    completion = client_text = None
    with live_hub.client() as client:
        completion = client.post(
            "/v1/chat/completions",
            json={
                "model": "demo",
                "messages": [{"role": "user", "content": marker}],
                "max_tokens": 8,
                "temperature": 0,
            },
        ).json()
    client_text = completion["choices"][0]["message"]["content"]

    rows = wait_for_audit(live_hub, set(request_ids))

    assert {request_id: row["status_code"] for request_id, row in rows.items()} == request_ids
    for row in rows.values():
        assert row["key_prefix"] == live_hub.api_key[:12] and row["endpoint"] == "chat.completions"
    ok = next(row for request_id, row in rows.items() if request_id.startswith("ok-"))
    assert int(ok["completion_tokens"]) == 3 and int(ok["latency_ms"]) >= int(ok["ttft_ms"])
    time.sleep(1)  # the audit writer flushes every 0.5 s
    with sqlite3.connect(live_hub.home / "db.sqlite3") as database:
        dump = "\n".join(
            repr(row)
            for table in ("audit_auditlog", "audit_adminaction")
            for row in database.execute(f"SELECT * FROM {table}")  # noqa: S608  (fixed table names)
        )
    assert marker not in dump
    assert client_text not in dump


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_by_the_right_amounts(live_hub):
    with live_hub.client() as client:
        before = client.get("/metrics").text
        for _ in range(3):
            client.post(
                "/v1/completions", json={"model": "demo", "prompt": "count me", "max_tokens": 4, "temperature": 0}
            ).raise_for_status()
        after = client.get("/metrics").text

    labels = {"endpoint": "completions", "model": "demo", "backend": "local", "status": "200"}
    assert (
        metric_value(after, "mlxhub_requests_total", **labels) - metric_value(before, "mlxhub_requests_total", **labels)
        == 3
    )
    assert (
        metric_value(after, "mlxhub_tokens_total", direction="out", model="demo")
        - metric_value(before, "mlxhub_tokens_total", direction="out", model="demo")
        == 12
    )
    assert "mlxhub_batch_size" in after and "mlxhub_time_to_first_token_seconds_bucket" in after
    weights = [line for line in after.splitlines() if line.startswith("mlxhub_model_weights_bytes{")]
    assert weights and all(float(line.rsplit(" ", 1)[1]) > 100_000 for line in weights)  # the tiny model: ~0.3 MB


def test_metrics_refuse_a_caller_without_an_admin_key(live_hub):
    assert httpx.get(f"{live_hub.base_url}/metrics").status_code == 401


@pytest.mark.services
def test_two_web_processes_sharing_redis_enforce_one_limit(tmp_path):
    redis_url = os.environ.get("MLXHUB_REDIS_URL") or "redis://127.0.0.1:6379/13"
    home = tmp_path / "shared-home"
    first = start_hub(home, MLXHUB_REDIS_URL=redis_url)
    second = None
    try:
        # Same MLXHUB_HOME: the second process shares the first one's SQLite database and keys.
        second = start_hub(home, MLXHUB_REDIS_URL=redis_url)
        _, secret = create_key(first, rpm=10)

        async def both() -> list[int]:
            halves = await asyncio.gather(fire(first.base_url, secret, 15), fire(second.base_url, secret, 15))
            return [status for half in halves for status in half]

        statuses = asyncio.run(both())
    finally:
        if second is not None:
            stop_hub(second)
        stop_hub(first)

    assert statuses.count(200) == 10
    assert statuses.count(429) == 20
