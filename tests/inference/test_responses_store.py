"""The responses store's services: owner-scoped rows, item references by id, and the purge with the audit retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from inference.engine.types import finish_event
from inference.formats.responses import ResponsesRenderer
from inference.models import StoredResponse
from inference.responses_store import (
    stored_item_get,
    stored_response_create,
    stored_response_delete,
    stored_response_get,
)
from inference.tasks import stored_responses_purge_expired
from mlxhub.accounts.callers import Caller
from tests.mlxhub.factories import make_user

pytestmark = pytest.mark.django_db


def answer(status: str = "stop") -> dict[str, Any]:
    events: list[Any] = [{"type": "delta", "text": "Hi", "tokens": 1}, finish_event(status, prompt=3, completion=1)]
    return ResponsesRenderer(envelope={"model": "demo", "store": True}).body(events)


def store(user: Any, response: dict[str, Any], **fields: Any) -> StoredResponse:
    row = stored_response_create(caller=Caller(user=user, team=None), response=response, input_items=[])
    assert row is not None
    if fields:
        StoredResponse.objects.filter(pk=row.pk).update(**fields)
    return row


def test_a_response_is_read_and_deleted_by_its_owner_only(alice, bob):
    row = store(alice, answer())

    assert stored_response_get(user_id=bob.pk, response_id=row.pk) is None
    assert stored_response_delete(user_id=bob.pk, response_id=row.pk) is False
    assert stored_response_get(user_id=alice.pk, response_id=row.pk) == row
    assert stored_response_delete(user_id=alice.pk, response_id=row.pk) is True
    assert not StoredResponse.objects.exists()


def test_only_answers_that_ended_are_kept():
    user = make_user("dora")
    failed = ResponsesRenderer(envelope={"model": "demo"})
    failed.builder.fail(message="unloaded", code="model_unloaded")
    assert failed.final is not None

    assert stored_response_create(caller=Caller(user=user, team=None), response=failed.final, input_items=[]) is None
    assert store(user, answer("length")).status == "incomplete"
    assert store(user, answer("stop")).status == "completed"


def test_an_item_is_found_by_its_id_in_its_owners_responses_only(alice, bob):
    response = answer()
    store(alice, response)
    message = response["output"][0]

    assert stored_item_get(user_id=alice.pk, item_id=message["id"]) == message
    assert stored_item_get(user_id=bob.pk, item_id=message["id"]) is None
    assert stored_item_get(user_id=alice.pk, item_id="msg_not_one_of_ours") is None


def test_the_purge_task_drops_rows_older_than_the_audit_retention(alice, settings):
    settings.MLXHUB_AUDIT_RETENTION_DAYS = 30
    old = store(alice, answer(), created_at=timezone.now() - timedelta(days=31))
    new = store(alice, answer(), created_at=timezone.now() - timedelta(days=29))

    assert stored_responses_purge_expired() == 1
    assert list(StoredResponse.objects.values_list("pk", flat=True)) == [new.pk]
    assert old.pk != new.pk


def test_the_purge_runs_on_the_beat_schedule_next_to_the_audit_purge(settings):
    from mlxhub.celery import app

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    app.loader.import_default_modules()

    assert {"audit.tasks.audit_log_purge_expired", "inference.tasks.stored_responses_purge_expired"} <= scheduled
    assert "inference.tasks.stored_responses_purge_expired" in app.tasks


def test_the_admin_shows_stored_responses_read_only(alice):
    store(alice, answer())
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(root)

    assert client.get("/admin/inference/storedresponse/").status_code == 200
    assert client.get("/admin/inference/storedresponse/add/").status_code == 403
