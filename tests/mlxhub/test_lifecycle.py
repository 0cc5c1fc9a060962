"""The lifecycle's parts alone: what a stopping process answers, and the ledgers it closes on its way out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from audit.models import AuditLog
from audit.services import audit_writer
from inference.services import RequestLedger, ledgers_close_open
from mlxhub import lifecycle
from mlxhub.accounts.callers import Caller
from mlxhub.accounts.limits import limits_usage


@pytest.fixture
def draining(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(lifecycle, "_state", "draining")
    yield


async def call(app: Any, path: str) -> tuple[int, dict[str, str], Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await lifecycle.Admission(app)({"type": "http", "path": path, "headers": []}, receive, send)
    headers = {name.decode(): value.decode() for name, value in sent[0].get("headers", [])}
    return sent[0]["status"], headers, json.loads(sent[1]["body"]) if sent[1].get("body") else None


async def answering_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert lifecycle.in_flight() == 1  # counted while it runs
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_while_serving_requests_pass_and_are_counted_in_flight():
    status, _, _ = await call(answering_ok, "/v1/chat/completions")

    assert status == 200 and lifecycle.in_flight() == 0


async def test_a_draining_process_refuses_v1_in_openai_shape_with_retry_after(draining: None):
    status, headers, body = await call(answering_ok, "/v1/chat/completions")

    assert status == 503 and headers["retry-after"] == "5"
    assert body["error"]["code"] == "shutting_down" and body["error"]["type"] == "server_error"


async def test_a_draining_process_refuses_anthropic_messages_in_anthropic_shape(draining: None):
    status, headers, body = await call(answering_ok, "/v1/messages")

    assert status == 503 and headers["retry-after"] == "5"
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"


async def test_a_draining_process_still_answers_pages_and_readyz(draining: None):
    status, _, _ = await call(answering_ok, "/readyz")

    assert status == 200  # the view itself says 503 (mlxhub.health)


async def test_a_process_whose_engine_died_says_engine_unavailable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(lifecycle, "_state", "engine_died")

    status, _, body = await call(answering_ok, "/v1/completions")

    assert status == 503 and body["error"]["code"] == "engine_unavailable"


@pytest.mark.django_db(transaction=True)  # the audit writer's thread writes the rows
def test_closing_the_open_ledgers_settles_their_reservations_and_writes_their_rows(bob: Any, make_api_key: Any):
    key = make_api_key(bob, limits={"max_concurrent": 2}).api_key
    ledgers = [
        RequestLedger(
            caller=Caller.of_key(key), request_id=f"open-{index}", endpoint="chat", model="demo", streamed=True
        )
        for index in range(2)
    ]
    for ledger in ledgers:
        ledger.reserve(100)
    assert limits_usage(owner=key)["concurrent"] == 2  # type: ignore[index]

    assert ledgers_close_open() >= 2
    assert audit_writer.flush(timeout=20)

    assert limits_usage(owner=key)["concurrent"] == 0  # type: ignore[index]
    rows = AuditLog.objects.filter(request_id__startswith="open-")
    assert sorted(row.status_code for row in rows) == [503, 503]
    assert all(row.error_type == "shutting_down" and row.cancelled for row in rows)
