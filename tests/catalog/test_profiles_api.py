"""/api/profiles/ and /api/models/{name}/load|unload: profiles CRUD with their live state, the pool on demand.

Loads go to the process-wide engine (inference.runtime); each test serves its own copy of the tiny model, so
its key is its own, and unloads it at the end.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from audit.models import AdminAction
from catalog.models import LocalModel, Profile
from catalog.services import local_model_register, profile_upsert
from inference import runtime
from inference.engine.engine import Engine
from inference.engine.local import InProcessEngineClient
from inference.engine.types import GenerationRequest, SamplingParams
from inference.engine_requests import model_spec_for
from inference.runtime import engine_config
from routing.models import RoutingFallback, RoutingRule
from tests.mlxhub.factories import PASSWORD

pytestmark = pytest.mark.django_db

WAIT_SECONDS = 60
# Far past anything a test waits for: the request below is still decoding when the test unloads its model.
ENDLESS_TOKENS = 1_000_000


def logged_in(user: AbstractUser) -> APIClient:
    api_client = APIClient()
    assert api_client.login(username=user.username, password=PASSWORD)
    return api_client


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def local_model(model_copy: Path) -> LocalModel:
    return local_model_register(path=model_copy)


@pytest.fixture
def profile(local_model: LocalModel) -> Iterator[Profile]:
    profile = profile_upsert(name="tiny-chat", local_model=local_model)
    yield profile
    unload_quietly(local_model.path)


def unload_quietly(key: str) -> None:
    """Leave the shared engine as the test found it: this test's model copy unloaded."""
    client = runtime._client
    if client is not None and client.engine.alive:
        async_to_sync(client.unload)(key, force=True)


def audited(action: str, profile: Profile) -> list[dict[str, Any]]:
    rows = AdminAction.objects.filter(action=action, object_type="catalog.Profile", object_id=str(profile.pk))
    return [{"actor": row.actor.username if row.actor else None, **row.changes} for row in rows.order_by("pk")]


def start_endless_request(profile: Profile) -> queue.Queue[Any]:
    """A request decoding on the profile's model until something ends it; returns its events once accepted.

    Submitted straight to the shared engine with a thread-safe sink (the API has no streaming caller here);
    the engine counts it as in flight from admission, so once "accepted" arrives the model is busy.
    """
    client = runtime.engine_client()
    assert isinstance(client, InProcessEngineClient)
    events: queue.Queue[Any] = queue.Queue()
    request = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model=model_spec_for(profile),
        prompt="once upon a time",
        max_tokens=ENDLESS_TOKENS,
        sampling=SamplingParams(temperature=0.0),
    )
    client.engine.submit(request, events.put)
    first = events.get(timeout=WAIT_SECONDS)
    assert first["type"] == "accepted", first
    return events


def endless_profile(local_model: LocalModel) -> Profile:
    # The demo models never emit EOS; a context this long lets the request run until it is unloaded.
    profile = profile_upsert(name="endless", local_model=local_model)
    profile.context_length = 2 * ENDLESS_TOKENS
    profile.save()
    return profile


def last_event(events: queue.Queue[Any]) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = events.get(timeout=WAIT_SECONDS)
        if event["type"] in ("finish", "error"):
            return event


@pytest.fixture
def cramped_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A real engine whose memory budget holds nothing, standing in for the process's engine in this test."""
    engine = Engine(engine_config(memory_budget=1))
    engine.start()
    monkeypatch.setattr(runtime, "_client", InProcessEngineClient(engine=engine))
    yield engine
    engine.stop()


@pytest.fixture
def engine_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a fresh web process: no engine yet (the shared one, if any, is put back after the test)."""
    monkeypatch.setattr(runtime, "_client", None)


# ---- reading ------------------------------------------------------------------------------------------


def test_a_viewer_lists_profiles_as_unloaded_without_starting_the_engine(
    charlie: AbstractUser, profile: Profile, engine_not_started: None
):
    response = logged_in(charlie).get("/api/profiles/")

    assert response.status_code == 200, response.content
    [item] = response.json()["results"]
    assert item["name"] == "tiny-chat"
    assert item["local_model"] == profile.local_model_id
    assert item["kind"] == "text"
    assert (item["state"], item["weights_bytes"], item["active_requests"]) == ("unloaded", 0, 0)
    assert not runtime.engine_client().started


def test_a_profile_is_read_by_its_name(charlie: AbstractUser, profile: Profile):
    response = logged_in(charlie).get("/api/profiles/tiny-chat/")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == profile.pk


def test_an_unknown_profile_is_a_404_problem(charlie: AbstractUser, db: None):
    problem(logged_in(charlie).get("/api/profiles/no-such-profile/"), 404)


def test_an_anonymous_caller_gets_a_401_problem(profile: Profile):
    problem(APIClient().get("/api/profiles/"), 401)


def test_the_profile_list_query_count_does_not_grow_with_the_profiles(
    charlie: AbstractUser, local_model: LocalModel, django_assert_max_num_queries: Any
):
    api = logged_in(charlie)
    for index in range(2):
        other = LocalModel.objects.create(repo_id=f"local/other-{index}", path=f"/nowhere/other-{index}")
        profile_upsert(name=f"first-{index}", local_model=other)
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/profiles/").json()["results"]) == 2
    for index in range(10):
        other = LocalModel.objects.create(repo_id=f"local/more-{index}", path=f"/nowhere/more-{index}")
        profile_upsert(name=f"more-{index}", local_model=other)
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/profiles/").json()["results"]) == 12


# ---- writing ------------------------------------------------------------------------------------------


def test_an_admin_creates_a_profile_and_the_change_is_audited(alice: AbstractUser, local_model: LocalModel):
    body = {
        "name": "careful",
        "local_model": local_model.pk,
        "system_prompt": "Answer briefly.",
        "default_temperature": 0.2,
        "default_top_p": 0.9,
        "default_max_tokens": 64,
        "idle_ttl_seconds": 300,
    }

    response = logged_in(alice).post("/api/profiles/", body, format="json")

    assert response.status_code == 201, response.content
    created = Profile.objects.get(name="careful")
    assert (created.default_temperature, created.default_max_tokens, created.pinned) == (0.2, 64, False)
    assert response.json()["state"] == "unloaded"
    [row] = audited(AdminAction.Action.CREATED, created)
    assert row["actor"] == "alice"
    assert row["system_prompt"] == "Answer briefly." and row["local_model"] == local_model.repo_id


def test_members_and_viewers_cannot_change_profiles(bob: AbstractUser, charlie: AbstractUser, profile: Profile):
    body = {"name": "nope", "local_model": profile.local_model_id}
    problem(logged_in(bob).post("/api/profiles/", body, format="json"), 403)
    problem(logged_in(charlie).patch("/api/profiles/tiny-chat/", {"pinned": True}, format="json"), 403)
    problem(logged_in(bob).delete("/api/profiles/tiny-chat/"), 403)

    assert list(Profile.objects.values_list("name", "pinned")) == [("tiny-chat", False)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("default_temperature", 2.5),
        ("default_temperature", -0.1),
        ("default_top_p", 1.01),
        ("default_max_tokens", 0),
        ("context_length", -5),
        ("idle_ttl_seconds", 0),
        ("local_model", 999_999),
        ("name", "not a slug"),
    ],
)
def test_an_out_of_range_or_unknown_value_is_a_400_problem_naming_the_field(
    alice: AbstractUser, local_model: LocalModel, field: str, value: Any
):
    body = {"name": "checked", "local_model": local_model.pk, field: value}

    errors = problem(logged_in(alice).post("/api/profiles/", body, format="json"), 400)["errors"]

    assert list(errors) == [field]
    assert not Profile.objects.exists()


def test_a_second_profile_with_the_same_name_is_refused(alice: AbstractUser, profile: Profile):
    body = {"name": "tiny-chat", "local_model": profile.local_model_id}

    assert "name" in problem(logged_in(alice).post("/api/profiles/", body, format="json"), 400)["errors"]


def test_a_partial_update_audits_only_what_changed(alice: AbstractUser, profile: Profile):
    response = logged_in(alice).patch(
        "/api/profiles/tiny-chat/", {"pinned": True, "enabled": True, "default_top_p": 0.5}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["pinned"], response.json()["default_top_p"]) == (True, 0.5)
    profile.refresh_from_db()
    assert (profile.pinned, profile.default_top_p) == (True, 0.5)
    assert audited(AdminAction.Action.CHANGED, profile) == [{"actor": "alice", "pinned": True, "default_top_p": 0.5}]


def test_a_full_update_can_rename_a_profile_and_clear_its_defaults(alice: AbstractUser, profile: Profile):
    profile.default_max_tokens = 99
    profile.save()
    body = {"name": "renamed", "local_model": profile.local_model_id, "default_max_tokens": None}

    response = logged_in(alice).put("/api/profiles/tiny-chat/", body, format="json")

    assert response.status_code == 200, response.content
    profile.refresh_from_db()
    assert (profile.name, profile.default_max_tokens) == ("renamed", None)
    assert logged_in(alice).get("/api/profiles/renamed/").status_code == 200


def test_an_admin_deletes_a_profile_whose_model_is_loaded(alice: AbstractUser, profile: Profile):
    api = logged_in(alice)
    assert api.post("/api/models/tiny-chat/load").status_code == 200
    profile_pk = profile.pk

    response = api.delete("/api/profiles/tiny-chat/")

    assert response.status_code == 204, response.content
    assert not Profile.objects.filter(pk=profile_pk).exists()
    deleted = AdminAction.objects.get(action=AdminAction.Action.DELETED, object_id=str(profile_pk))
    assert deleted.actor == alice


def test_deleting_a_profile_a_routing_rule_targets_is_a_409_problem(alice: AbstractUser, profile: Profile):
    RoutingRule.objects.create(name="to-tiny", pattern="gpt-*", match="glob", target_profile=profile)
    elsewhere = RoutingRule.objects.create(name="via-tiny", pattern="claude-*", match="glob", target_model="x")
    RoutingFallback.objects.create(rule=elsewhere, position=0, target_profile=profile)

    body = problem(logged_in(alice).delete("/api/profiles/tiny-chat/"), 409)

    assert body["detail"] == "tiny-chat is a target of routing rules: to-tiny, via-tiny."
    assert Profile.objects.filter(pk=profile.pk).exists()
    assert not AdminAction.objects.filter(action=AdminAction.Action.DELETED).exists()


# ---- loading and unloading ----------------------------------------------------------------------------


def test_an_admin_loads_a_model_and_the_list_shows_it_loaded_with_its_memory(alice: AbstractUser, profile: Profile):
    api = logged_in(alice)

    response = api.post("/api/models/tiny-chat/load")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["state"], body["path"], body["active_requests"]) == (
        "tiny-chat",
        "loaded",
        profile.local_model.path,
        0,
    )
    assert body["weights_bytes"] > 0
    [item] = api.get("/api/profiles/").json()["results"]
    assert (item["state"], item["weights_bytes"]) == ("loaded", body["weights_bytes"])
    assert audited(AdminAction.Action.CHANGED, profile) == [{"actor": "alice", "load": True}]


def test_loading_twice_loads_once(alice: AbstractUser, profile: Profile):
    api = logged_in(alice)

    first = api.post("/api/models/tiny-chat/load")
    second = api.post("/api/models/tiny-chat/load/")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["loads"] == first.json()["loads"]


def test_a_model_that_does_not_fit_is_a_503_problem_with_retry_after(
    alice: AbstractUser, profile: Profile, cramped_engine: Engine
):
    response = logged_in(alice).post("/api/models/tiny-chat/load")

    body = problem(response, 503)
    assert body["detail"].startswith("Not enough memory to load this model")
    assert int(response["Retry-After"]) > 0
    assert cramped_engine.stats()["models"].get(profile.local_model.path, {"state": "unloaded"})["state"] == "unloaded"
    assert not audited(AdminAction.Action.CHANGED, profile)


def test_a_model_whose_weights_are_broken_is_a_503_problem(alice: AbstractUser, profile: Profile):
    weights = Path(profile.local_model.path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    body = problem(logged_in(alice).post("/api/models/tiny-chat/load"), 503)

    assert "could not be loaded" in body["detail"]


def test_loading_or_unloading_an_unknown_model_is_a_404_problem(alice: AbstractUser, db: None):
    problem(logged_in(alice).post("/api/models/no-such-model/load"), 404)
    problem(logged_in(alice).post("/api/models/no-such-model/unload"), 404)


def test_only_admins_load_and_unload(bob: AbstractUser, charlie: AbstractUser, profile: Profile):
    problem(logged_in(bob).post("/api/models/tiny-chat/load"), 403)
    problem(logged_in(charlie).post("/api/models/tiny-chat/unload"), 403)
    problem(logged_in(bob).get("/api/models/tiny-chat/load"), 403)


def test_unloading_a_busy_model_is_a_409_problem_and_forcing_ends_its_request(alice: AbstractUser, profile: Profile):
    endless = endless_profile(profile.local_model)
    events = start_endless_request(endless)
    api = logged_in(alice)

    refused = problem(api.post("/api/models/endless/unload"), 409)
    still = api.get("/api/profiles/endless/").json()
    forced = api.post("/api/models/endless/unload", {"force": True}, format="json")

    assert "in flight" in refused["detail"]
    assert (still["state"], still["active_requests"]) == ("loaded", 1)
    assert forced.status_code == 200, forced.content
    assert forced.json() == {"id": "endless", "state": "unloaded"}
    ended = last_event(events)
    assert (ended["type"], ended["status"], ended["code"]) == ("error", 503, "model_unloaded")
    assert api.get("/api/profiles/endless/").json()["state"] == "unloaded"
    assert audited(AdminAction.Action.CHANGED, endless) == [{"actor": "alice", "unload": True, "force": True}]


def test_an_idle_model_unloads_without_force(alice: AbstractUser, profile: Profile):
    api = logged_in(alice)
    assert api.post("/api/models/tiny-chat/load").status_code == 200

    response = api.post("/api/models/tiny-chat/unload")

    assert response.status_code == 200, response.content
    assert async_to_sync(runtime.engine_client().stats)().model(profile.local_model.path).state == "unloaded"
    assert audited(AdminAction.Action.CHANGED, profile)[-1] == {"actor": "alice", "unload": True, "force": False}


def test_unloading_before_the_engine_started_does_not_start_it(
    alice: AbstractUser, profile: Profile, engine_not_started: None
):
    response = logged_in(alice).post("/api/models/tiny-chat/unload")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "unloaded"
    assert not runtime.engine_client().started


def test_a_force_flag_that_is_not_a_boolean_is_a_400_problem(alice: AbstractUser, profile: Profile):
    body = problem(logged_in(alice).post("/api/models/tiny-chat/unload", {"force": "maybe"}, format="json"), 400)

    assert "force" in body["errors"]
