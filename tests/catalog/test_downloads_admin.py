"""The catalog in the admin: hub search with a download button, the htmx progress page, actions, the token."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Download, HubToken, LocalModel
from catalog.selectors import hub_token_value
from catalog.services import local_model_register, profile_upsert
from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub, FakeRepo, text_repo

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings

pytestmark = pytest.mark.usefixtures("hub_settings")

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def admin_client(db, settings) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The manifest storage needs `collectstatic` first, which the in-process suite does not run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1234")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def repo(request, fake_hub: FakeHub, tiny_model_dir: Path) -> FakeRepo:
    return fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/admin-{request.node.name[5:60]}"))


def test_the_hub_search_page_lists_results_with_a_download_button(admin_client: Client):
    response = admin_client.get(reverse("admin:catalog_download_hub"), {"q": "tiny", "quantization": "8-bit"})

    assert response.status_code == 200
    page = response.content.decode()
    assert f"{ORG}/tiny-llama-8bit" in page and f"{ORG}/tiny-llama-4bit" not in page
    assert 'value="Download"' in page


def test_the_hub_model_page_shows_the_facts_and_starts_a_download(admin_client: Client, repo: FakeRepo):
    page = admin_client.get(reverse("admin:catalog_download_hub_model", args=[repo.repo_id])).content.decode()
    assert "LlamaForCausalLM" in page and "2048" in page and "apache-2.0" in page

    response = admin_client.post(reverse("admin:catalog_download_start"), {"repo_id": repo.repo_id})

    download = Download.objects.get(repo_id=repo.repo_id)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:catalog_download_progress", args=[download.pk])
    assert download.requested_by.get_username() == "root"


def test_a_refused_download_goes_back_to_the_model_page_with_the_reason(admin_client, repo, hub_settings):
    hub_settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 1 << 60

    response = admin_client.post(reverse("admin:catalog_download_start"), {"repo_id": repo.repo_id}, follow=True)

    assert "Not enough free disk space" in response.content.decode()
    assert not Download.objects.exists()


def test_the_progress_view_is_a_page_and_for_htmx_a_polling_fragment(admin_client: Client):
    download = Download.objects.create(repo_id=f"{ORG}/x", bytes_total=1000, bytes_done=250, status="running")
    url = reverse("admin:catalog_download_progress", args=[download.pk])

    page = admin_client.get(url).content.decode()
    fragment = admin_client.get(url, **HTMX).content.decode()

    assert "<html" in page and "htmx" in page and f'id="download-{download.pk}"' in page
    assert "<html" not in fragment and 'hx-trigger="every 1s"' in fragment
    assert 'value="250" max="1000"' in fragment and "25.0%" in fragment


def test_a_finished_download_stops_polling_and_offers_a_profile(admin_client: Client, tiny_model_dir: Path):
    local_model = local_model_register(path=tiny_model_dir, repo_id=f"{ORG}/x")
    download = Download.objects.create(repo_id=f"{ORG}/x", bytes_total=10, bytes_done=10, status="done",
                                       local_model=local_model)  # fmt: skip

    fragment = admin_client.get(reverse("admin:catalog_download_progress", args=[download.pk]), **HTMX)

    body = fragment.content.decode()
    assert "hx-trigger" not in body
    assert f"{reverse('admin:catalog_profile_add')}?local_model={local_model.pk}" in body


def test_the_buttons_pause_and_resume_and_answer_with_the_fragment(admin_client: Client):
    download = Download.objects.create(repo_id=f"{ORG}/x", bytes_total=1000, status="running")

    paused = admin_client.post(reverse("admin:catalog_download_act", args=[download.pk, "pause"]), **HTMX)
    again = admin_client.post(reverse("admin:catalog_download_act", args=[download.pk, "pause"]), **HTMX)

    assert 'data-status="paused"' in paused.content.decode()
    assert "cannot become paused" in again.content.decode()
    download.refresh_from_db()
    assert download.status == Download.Status.PAUSED


def test_admin_actions_cancel_and_retry_downloads(admin_client: Client, hub_settings):
    running = Download.objects.create(repo_id=f"{ORG}/a", status="running")
    failed = Download.objects.create(repo_id=f"{ORG}/b", status="failed", error="boom")
    partial = Path(hub_settings.MLXHUB_MODELS_DIR) / ".partial" / "mlx-community--a"
    partial.mkdir(parents=True)
    changelist = reverse("admin:catalog_download_changelist")

    admin_client.post(changelist, {"action": "cancel", "_selected_action": [running.pk]})
    admin_client.post(changelist, {"action": "retry", "_selected_action": [failed.pk, running.pk]})

    running.refresh_from_db()
    failed.refresh_from_db()
    assert (running.status, failed.status, failed.error) == ("cancelled", "queued", "")
    assert not partial.exists()


def test_the_downloads_changelist_costs_the_same_queries_for_one_job_or_many(admin_client: Client):
    user = get_user_model().objects.get()
    Download.objects.create(repo_id=f"{ORG}/a", requested_by=user)
    url = reverse("admin:catalog_download_changelist")
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for name in "bcdef":
        Download.objects.create(repo_id=f"{ORG}/{name}", requested_by=user, status="done")
    with CaptureQueriesContext(connection) as six:
        assert admin_client.get(url).status_code == 200

    assert len(six) == len(one)


def test_the_local_model_delete_action_reports_the_bytes_freed_and_refuses_models_in_use(
    admin_client: Client, hub_settings, tiny_model_dir: Path
):
    models = Path(hub_settings.MLXHUB_MODELS_DIR)
    used = local_model_register(path=Path(shutil.copytree(tiny_model_dir, models / "acme--used")))
    free = local_model_register(path=Path(shutil.copytree(tiny_model_dir, models / "acme--free")))
    profile_upsert(name="in-use", local_model=used)
    changelist = reverse("admin:catalog_localmodel_changelist")

    response = admin_client.post(
        changelist, {"action": "delete_with_files", "_selected_action": [used.pk, free.pk]}, follow=True
    )

    page = response.content.decode()
    assert "in-use" in page and f"({free.size_bytes:,} bytes)" in page
    assert list(LocalModel.objects.values_list("pk", flat=True)) == [used.pk]
    assert not (models / "acme--free").exists() and (models / "acme--used").is_dir()


def test_the_scan_button_registers_folders_on_disk(admin_client: Client, hub_settings, tiny_model_dir: Path):
    shutil.copytree(tiny_model_dir, Path(hub_settings.MLXHUB_MODELS_DIR) / "acme--found")

    response = admin_client.post(reverse("admin:catalog_localmodel_scan"), follow=True)

    assert "Found 1 model folder(s) on disk." in response.content.decode()
    assert LocalModel.objects.get().repo_id == "acme/found"


def test_the_token_is_entered_in_the_admin_and_never_shown_again(admin_client: Client):
    secret = "hf_AdminSecret0123456789abcdefghijkl"

    response = admin_client.post(reverse("admin:catalog_hubtoken_add"), {"token": secret})

    assert response.status_code == 302, response.content.decode()
    assert hub_token_value() == secret
    row = HubToken.objects.get()
    for url in (reverse("admin:catalog_hubtoken_changelist"), reverse("admin:catalog_hubtoken_change", args=[row.pk])):
        assert secret not in admin_client.get(url).content.decode()
    assert admin_client.get(reverse("admin:catalog_hubtoken_add")).status_code == 403
