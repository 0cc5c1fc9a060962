"""The profiles changelist: each model's load state, and the load / unload / force unload actions."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AdminAction
from catalog.models import LocalModel, Profile
from catalog.services import profile_upsert
from inference import runtime
from inference.engine.engine import Engine
from tests.catalog import test_profiles_api
from tests.catalog.test_profiles_api import audited, endless_profile, last_event, start_endless_request

# Shared with the API tests: a profile on this test's own copy of the tiny model, unloaded afterwards.
local_model = test_profiles_api.local_model
profile = test_profiles_api.profile
cramped_engine = test_profiles_api.cramped_engine
engine_not_started = test_profiles_api.engine_not_started

CHANGELIST = "admin:catalog_profile_changelist"


@pytest.fixture
def admin_client(db: None, settings: Any) -> Client:
    # The manifest storage needs `collectstatic` first, which the in-process suite does not run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1234")
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, *profiles: Profile) -> list[tuple[str, str]]:
    """Run a changelist action; the messages it left, as (level, text)."""
    response = client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [p.pk for p in profiles]}, follow=True
    )
    assert response.status_code == 200
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def state_cell(client: Client) -> str:
    page = client.get(reverse(CHANGELIST)).content.decode()
    start = page.index('class="field-state"')
    return page[page.index(">", start) + 1 : page.index("</td>", start)]


def test_the_changelist_shows_unloaded_without_starting_the_engine(
    admin_client: Client, profile: Profile, engine_not_started: None
):
    assert state_cell(admin_client) == "unloaded"
    assert not runtime.engine_client().started


def test_the_load_action_loads_the_model_and_the_column_shows_its_memory(admin_client: Client, profile: Profile):
    messages = act(admin_client, "load_models", profile)

    [(level, text)] = messages
    assert level == "success" and text.startswith("Loaded tiny-chat (")
    stats = async_to_sync(runtime.engine_client().stats)().model(profile.local_model.path)
    assert stats.state == "loaded"
    assert state_cell(admin_client).startswith("loaded (") and "running" not in state_cell(admin_client)
    # Which kernel path the model runs on, and in which dtype.
    assert f"{stats.kernel_path}, {stats.weights_dtype}" in state_cell(admin_client)
    assert audited(AdminAction.Action.CHANGED, profile) == [{"actor": "root", "load": True}]


def test_a_load_that_does_not_fit_is_reported_as_an_error(
    admin_client: Client, profile: Profile, cramped_engine: Engine
):
    [(level, text)] = act(admin_client, "load_models", profile)

    assert level == "error"
    assert text.startswith("tiny-chat was not loaded: Not enough memory to load this model")


def test_the_idle_only_unload_refuses_a_busy_model_and_force_unload_ends_its_request(
    admin_client: Client, profile: Profile
):
    endless = endless_profile(profile.local_model)
    events = start_endless_request(endless)
    assert state_cell(admin_client).endswith(", 1 running)")

    [(refused_level, refused)] = act(admin_client, "unload_idle_models", endless)
    assert refused_level == "warning" and "in flight" in refused
    assert async_to_sync(runtime.engine_client().stats)().model(endless.local_model.path).active_requests == 1

    [(forced_level, forced)] = act(admin_client, "force_unload_models", endless)
    assert (forced_level, forced) == ("success", "Unloaded endless.")
    assert last_event(events)["code"] == "model_unloaded"
    assert state_cell(admin_client) == "unloaded"
    assert audited(AdminAction.Action.CHANGED, endless) == [{"actor": "root", "unload": True, "force": True}]


def test_the_idle_only_unload_unloads_an_idle_model(admin_client: Client, profile: Profile):
    act(admin_client, "load_models", profile)

    assert act(admin_client, "unload_idle_models", profile) == [("success", "Unloaded tiny-chat.")]
    assert state_cell(admin_client) == "unloaded"


def test_the_changelist_costs_the_same_queries_for_one_profile_or_many(admin_client: Client, local_model: LocalModel):
    profile_upsert(name="first", local_model=local_model)
    url = reverse(CHANGELIST)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for index in range(5):
        other = LocalModel.objects.create(repo_id=f"local/other-{index}", path=f"/nowhere/other-{index}")
        profile_upsert(name=f"other-{index}", local_model=other)
    with CaptureQueriesContext(connection) as six:
        assert admin_client.get(url).status_code == 200

    assert len(six) == len(one)
