"""/healthz and /readyz, and the request id every response carries."""

from __future__ import annotations

from django.conf import settings
from django.test import Client

from mlxhub.kernels import process_plan


def test_healthz_answers_ok_without_a_key(client: Client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_database_broker_and_engine_ready(db, client: Client):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok", "engine": "ok"}
    # The kernel path this process serves: what the launcher preloaded, or stock.
    assert body["kernels"] == process_plan(settings.MLXHUB_CPU_KERNELS).as_dict()
    assert body["kernels"]["path"] in ("optimized", "stock")


def test_every_response_gets_a_generated_request_id(client: Client):
    first = client.get("/healthz")["x-request-id"]
    second = client.get("/healthz")["x-request-id"]

    assert first.startswith("req_")
    assert second.startswith("req_")
    assert first != second


def test_a_sane_incoming_request_id_is_kept(client: Client):
    response = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a:42"})

    assert response["x-request-id"] == "lb-7f3a:42"


def test_an_unsafe_incoming_request_id_is_replaced(client: Client):
    response = client.get("/healthz", headers={"X-Request-Id": "evil id\r\nSet-Cookie: x=1"})

    assert response["x-request-id"].startswith("req_")
