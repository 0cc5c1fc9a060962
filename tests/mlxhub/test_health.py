"""/healthz and /readyz, and the request id every response carries."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from mlxhub.accounts.models import KeyScope
from mlxhub.celery import app as celery_app
from mlxhub.kernels import process_plan

# A broker that refuses connections: its error names the host, which only the details may show.
DEAD_BROKER = "redis://127.0.0.1:9/0"


@pytest.fixture
def dead_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_app.conf, "broker_url", DEAD_BROKER)


def test_healthz_answers_ok_without_a_key(client: Client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_database_broker_and_engine_ready(db, client: Client, alice):
    client.force_login(alice)  # an admin's session: the details too
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


def test_anonymous_readyz_says_only_ok_or_not_per_component(db, client: Client, dead_broker: None):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "broker": "unavailable", "engine": "ok"},
    }
    assert b"127.0.0.1" not in response.content and b"kernels" not in response.content


def test_a_member_session_or_an_inference_key_sees_no_details(db, client: Client, bob, make_api_key, dead_broker):
    inference_key = make_api_key(bob).secret
    answers = [client.get("/readyz", headers={"Authorization": f"Bearer {inference_key}"})]
    client.force_login(bob)
    answers.append(client.get("/readyz"))

    for answer in answers:
        assert answer.json()["checks"]["broker"] == "unavailable"
        assert "kernels" not in answer.json()


def test_a_control_key_or_a_staff_session_reads_why_a_component_is_not_ready(
    db, client: Client, alice: Any, bob: Any, make_api_key: Any, dead_broker: None
):
    control_key = make_api_key(alice, scope=KeyScope.CONTROL).secret
    by_key = client.get("/readyz", headers={"Authorization": f"Bearer {control_key}"})
    bob.is_staff = True
    bob.save(update_fields=["is_staff"])
    client.force_login(bob)
    by_staff = client.get("/readyz")

    for answer in (by_key, by_staff):
        assert answer.status_code == 503
        body = answer.json()
        assert body["checks"]["broker"] not in ("ok", "unavailable")  # the error itself, in words
        assert body["checks"]["database"] == "ok" and body["lifecycle"] == "serving"
        assert "kernels" in body
