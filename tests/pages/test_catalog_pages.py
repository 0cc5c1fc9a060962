"""/models/, /discover/, /downloads/ and /playground/ in-process: the fake hub, the in-process engine, no worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from audit.models import AdminAction
from catalog.models import Download, LocalModel, Profile
from inference import runtime
from tests.catalog import conftest as catalog_conftest
from tests.catalog import fakehub, test_profiles_api
from tests.catalog.fakehub import ORG, FakeHub, FakeRepo, text_repo
from tests.pages.conftest import HTMX, make_download

fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings
model_copy = catalog_conftest.model_copy
# A profile on this test's own copy of the tiny model, unloaded afterwards (shared with the API tests).
local_model = test_profiles_api.local_model
profile = test_profiles_api.profile

# Every test searches the fake hub, never the real one, and downloads into its own folder.
pytestmark = pytest.mark.usefixtures("hub_settings")


@pytest.fixture
def repo(request: Any, fake_hub: FakeHub, tiny_model_dir: Path) -> FakeRepo:
    return fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/pages-{request.node.name[5:60]}"))


def engine_stats(profile: Profile) -> Any:
    return async_to_sync(runtime.engine_client().stats)().model(profile.local_model.path)


# /models/
def test_a_member_makes_a_profile_with_the_form_and_it_is_audited(as_bob: Client, local_model: LocalModel):
    response = as_bob.post(
        "/models/profiles/",
        {"name": "helper", "local_model": local_model.pk, "system_prompt": "Be brief.", "default_temperature": "0.2",
         "default_max_tokens": "64", "idle_ttl_seconds": "300"},
    )  # fmt: skip

    assert response.status_code == 302 and response["Location"] == "/models/#profile-helper"
    profile = Profile.objects.get(name="helper")
    assert (profile.system_prompt, profile.default_temperature, profile.idle_ttl_seconds) == ("Be brief.", 0.2, 300)
    row = AdminAction.objects.get(object_type="catalog.Profile", action="created")
    assert row.actor.username == "bob" and row.changes["name"] == "helper"
    assert "helper" in as_bob.get("/models/").content.decode()


def test_a_profile_form_with_bad_values_names_the_fields(as_bob: Client, local_model: LocalModel):
    response = as_bob.post("/models/profiles/", {"name": "has space", "local_model": local_model.pk,
                                                 "default_temperature": "9"})  # fmt: skip

    assert response.status_code == 422
    page = response.content.decode()
    assert "Enter a valid “slug”" in page and "less than or equal to 2" in page
    assert not Profile.objects.filter(name="has space").exists()


def test_the_models_page_shows_state_memory_kind_kernel_and_fit(as_bob: Client, profile: Profile):
    assert 'data-state="unloaded"' in as_bob.get("/models/").content.decode()

    response = as_bob.post(f"/models/profiles/{profile.name}/load/", **HTMX)

    page = response.content.decode()
    stats = engine_stats(profile)
    assert response.status_code == 200 and 'data-state="loaded"' in page
    assert stats.kernel_path and stats.kernel_path in page and "Text" in page
    full = as_bob.get("/models/").content.decode()
    assert "fits" in full and profile.local_model.repo_id in full


def test_pinning_loads_the_model_and_unloading_frees_it(as_bob: Client, profile: Profile):
    as_bob.post(f"/models/profiles/{profile.name}/pin/", {"pinned": "1"}, **HTMX)

    profile.refresh_from_db()
    stats = engine_stats(profile)
    assert profile.pinned and stats.state == "loaded" and stats.pinned

    response = as_bob.post(f"/models/profiles/{profile.name}/unload/", **HTMX)

    assert 'data-state="unloaded"' in response.content.decode()
    assert engine_stats(profile).state == "unloaded"


def test_a_load_that_does_not_fit_answers_in_words(as_bob: Client, profile: Profile, monkeypatch: Any):
    from inference.engine.types import EngineError

    def refuse(**kwargs: Any) -> dict[str, Any]:
        raise EngineError("6.1 GB needed, 2.3 GB free.", status=503, code="insufficient_memory", retry_after=5)

    monkeypatch.setattr("catalog.views.models.profile_load", refuse)
    response = as_bob.post(f"/models/profiles/{profile.name}/load/", **HTMX)

    assert response.status_code == 503
    assert response.content.decode().startswith("Not enough memory to load “tiny-chat”: 6.1 GB needed")


# /discover/
def test_the_discover_page_renders_its_skeleton_and_loads_the_results_as_a_fragment(as_bob: Client):
    page = as_bob.get("/discover/?q=tiny").content.decode()
    assert 'hx-get="/discover/?q=tiny"' in page and 'hx-trigger="load"' in page and "hub-results" not in page

    response = as_bob.get("/discover/", {"q": "tiny", "quantization": "8-bit"}, **HTMX)

    fragment = response.content.decode()
    assert "HX-Request" in response["Vary"] and "<html" not in fragment
    assert f"{ORG}/tiny-llama-8bit" in fragment and f"{ORG}/tiny-llama-4bit" not in fragment
    assert ">Download<" in fragment


CATALOG = [
    f"{ORG}/tiny-llama-bf16", f"{ORG}/tiny-llama-4bit", f"{ORG}/tiny-llama-8bit", f"{ORG}/mini-bert-embed",
    f"{ORG}/pali-vision-8bit", "someone-else/tiny-llama-4bit",
]  # fmt: skip


def test_the_search_filters_by_kind_author_architecture_and_size(as_bob: Client, settings: Any):
    def names(**params: str) -> set[str]:
        page = as_bob.get("/discover/", params, **HTMX).content.decode()
        return {name for name in CATALOG if f">{name}<" in page}

    assert names(kind="embedding") == {f"{ORG}/mini-bert-embed"}
    assert names(author="", q="tiny-llama-4bit") == {f"{ORG}/tiny-llama-4bit", "someone-else/tiny-llama-4bit"}
    assert names(architecture="PaliGemma") == {f"{ORG}/pali-vision-8bit"}
    assert f"{ORG}/tiny-llama-bf16" in names(q="tiny")
    # The config-only repositories weigh a few kilobytes; the real tiny model over 300 KB.
    settings.MLXHUB_MEMORY_BUDGET_BYTES = 100_000
    assert names(q="tiny", size="fits") == {f"{ORG}/tiny-llama-4bit", f"{ORG}/tiny-llama-8bit"}


def test_without_javascript_the_search_renders_inline(as_bob: Client):
    page = as_bob.get("/discover/", {"q": "tiny", "inline": "1"}).content.decode()

    assert "<html" in page and f"{ORG}/tiny-llama-bf16" in page


def test_a_hub_error_is_shown_in_words(as_bob: Client, settings: Any):
    settings.MLXHUB_HF_ENDPOINT = "http://127.0.0.1:9"

    page = as_bob.get("/discover/", {"q": "unreachable"}, **HTMX).content.decode()

    assert "Network error with the hub at http://127.0.0.1:9" in page


def test_the_hub_model_page_shows_files_sizes_the_fit_and_a_download_button(as_bob: Client, repo: FakeRepo):
    page = as_bob.get(f"/discover/{repo.repo_id}/").content.decode()

    assert "model.safetensors" in page and "config.json" in page and "LlamaForCausalLM" in page
    assert "Fits this machine?" in page and "Yes: it needs about" in page
    assert 'id="download-button"' in page


def test_a_model_bigger_than_the_budget_says_it_does_not_fit(as_bob: Client, repo: FakeRepo, settings: Any):
    settings.MLXHUB_MEMORY_BUDGET_BYTES = 1000

    page = as_bob.get(f"/discover/{repo.repo_id}/").content.decode()

    assert "No: it needs about" in page and "Raise <code>MLXHUB_MEMORY_BUDGET</code>" in page


def test_an_unknown_repository_is_a_404_page(as_bob: Client):
    assert as_bob.get(f"/discover/{ORG}/does-not-exist/").status_code == 404


# /downloads/
def test_download_starts_a_job_and_lands_on_its_row(as_bob: Client, bob: Any, repo: FakeRepo):
    response = as_bob.post("/downloads/start/", {"repo_id": repo.repo_id})

    download = Download.objects.get(repo_id=repo.repo_id)
    assert response.status_code == 302 and response["Location"] == f"/downloads/#download-{download.pk}"
    assert download.requested_by == bob and download.status == Download.Status.QUEUED
    page = as_bob.get("/downloads/").content.decode()
    assert f'id="download-{download.pk}"' in page and f'hx-get="/downloads/{download.pk}/"' in page


def test_a_refused_download_goes_back_with_the_reason(as_bob: Client, hub_settings: Any, repo: FakeRepo):
    hub_settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 10**18

    response = as_bob.post("/downloads/start/", {"repo_id": repo.repo_id}, follow=True)

    assert "Not enough free disk space" in response.content.decode()
    assert not Download.objects.exists()


def test_an_active_row_polls_itself_and_a_finished_one_stops(as_bob: Client, tiny_model_dir: Path):
    download = make_download(f"{ORG}/polling")

    row = as_bob.get(f"/downloads/{download.pk}/", **HTMX).content.decode()
    assert 'hx-trigger="every 1s"' in row and "25%" in row and "1000 bytes of 3.9" in row.replace("\xa0", " ")

    local = LocalModel.objects.create(repo_id=f"{ORG}/polling", path=str(tiny_model_dir), size_bytes=4000)
    Download.objects.filter(pk=download.pk).update(status="done", bytes_done=4000, local_model=local)
    row = as_bob.get(f"/downloads/{download.pk}/", **HTMX).content.decode()

    assert "hx-trigger" not in row and "100%" in row and f"/models/#model-{local.pk}" in row


def test_pause_resume_and_cancel_answer_the_row(bob: Any, as_bob: Client, hub_settings: Any):
    download = make_download(f"{ORG}/actions", status="queued", requested_by=bob)  # members change their own

    paused = as_bob.post(f"/downloads/{download.pk}/pause/", **HTMX).content.decode()
    assert 'data-status="paused"' in paused and ">Resume<" in paused
    resumed = as_bob.post(f"/downloads/{download.pk}/resume/", **HTMX).content.decode()
    assert 'data-status="queued"' in resumed
    cancelled = as_bob.post(f"/downloads/{download.pk}/cancel/", **HTMX).content.decode()
    assert 'data-status="cancelled"' in cancelled and ">Cancel<" not in cancelled
    refused = as_bob.post(f"/downloads/{download.pk}/pause/", **HTMX)
    assert refused.status_code == 409 and "cannot become paused" in refused.content.decode()


def test_a_failed_download_shows_its_error_in_plain_words(bob: Any, as_bob: Client):
    error = "The hub refused access to x (HTTP 403); a token is needed."
    make_download(f"{ORG}/broken", status="failed", error=error, requested_by=bob)

    page = as_bob.get("/downloads/").content.decode()

    assert "a token is needed" in page and ">Retry<" in page


# /playground/
def test_the_playground_offers_chat_and_embedding_profiles_to_its_script(as_bob: Client, tiny_profile: Profile):
    response = as_bob.get("/playground/?profile=tiny-chat")

    page = response.content.decode()
    assert 'id="playground-config"' in page and '"chat_url": "/v1/chat/completions"' in page
    assert '"base_url": "http://testserver/v1"' in page and '"selected": "tiny-chat"' in page
    assert '"can_use": true' in page and "/static/mlxhub/playground.js" in page


def test_a_viewer_sees_the_playground_but_cannot_send(as_charlie: Client, tiny_profile: Profile):
    page = as_charlie.get("/playground/").content.decode()

    assert '"can_use": false' in page and "ask a team admin for the member role" in page
