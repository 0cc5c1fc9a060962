"""The catalog's control API: roles, shapes, and RFC 7807 problems for every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from catalog.models import Download, LocalModel
from catalog.services import download_partial_dir, local_model_register, profile_upsert
from mlxhub.accounts.models import Role, Team
from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub, FakeRepo, text_repo
from tests.mlxhub.factories import PASSWORD, make_user

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings


pytestmark = pytest.mark.usefixtures("hub_settings")

API = "/api/catalog"


def client_for(username: str, team: Team, role: Role) -> APIClient:
    make_user(username, team=team, role=role)
    api_client = APIClient()
    assert api_client.login(username=username, password=PASSWORD)
    return api_client


@pytest.fixture
def alice(team: Team) -> APIClient:
    """Admin, logged in (the root conftest's alice is a user; here she is her API client)."""
    return client_for("alice", team, Role.ADMIN)


@pytest.fixture
def bob(team: Team) -> APIClient:
    """Member."""
    return client_for("bob", team, Role.MEMBER)


@pytest.fixture
def charlie(team: Team) -> APIClient:
    """Viewer."""
    return client_for("charlie", team, Role.VIEWER)


@pytest.fixture
def repo(request, fake_hub: FakeHub, tiny_model_dir: Path) -> FakeRepo:
    return fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/api-{request.node.name[5:60]}"))


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["request_id"] == response["x-request-id"]
    return body


def test_an_anonymous_search_gets_a_401_problem(db):
    problem(APIClient().get(f"{API}/search/"), 401)


def test_a_viewer_searches_the_hub_with_filters(charlie: APIClient):
    response = charlie.get(f"{API}/search/", {"q": "tiny", "quantization": "4-bit"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert [result["repo_id"] for result in body["results"]] == [f"{ORG}/tiny-llama-4bit"]
    assert (body["page"], body["has_next"]) == (1, False)


def test_a_search_with_an_unknown_sort_is_a_400_problem_naming_the_field(charlie: APIClient):
    body = problem(charlie.get(f"{API}/search/", {"sort": "stars"}), 400)

    assert "sort" in body["errors"]


def test_the_model_detail_takes_a_repository_id_with_its_slash(charlie: APIClient):
    response = charlie.get(f"{API}/models/{ORG}/pali-vision-8bit/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["repo_id"], body["kind"], body["local_model"], body["active_download"]) == (
        f"{ORG}/pali-vision-8bit",
        "vision",
        None,
        None,
    )
    assert {item["path"] for item in body["files"]} == {"README.md", "config.json", "model.safetensors"}


def test_an_unknown_model_is_a_404_problem(charlie: APIClient):
    body = problem(charlie.get(f"{API}/models/{ORG}/no-such-model/"), 404)

    assert "not found on the hub" in body["detail"]


def test_a_viewer_cannot_start_a_download(charlie: APIClient, repo: FakeRepo):
    problem(charlie.post(f"{API}/downloads/", {"repo_id": repo.repo_id}, format="json"), 403)
    assert not Download.objects.exists()


def test_a_member_starts_a_download_and_a_second_request_joins_it(bob: APIClient, repo: FakeRepo):
    first = bob.post(f"{API}/downloads/", {"repo_id": repo.repo_id}, format="json")
    second = bob.post(f"{API}/downloads/", {"repo_id": repo.repo_id, "revision": "main"}, format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    job = bob.get(f"{API}/downloads/{first.json()['id']}/").json()
    assert {"status", "bytes_done", "bytes_total", "speed", "eta", "error"} <= set(job)
    assert (job["status"], job["bytes_done"], job["requested_by"]) == ("queued", 0, "bob")
    assert job["bytes_total"] == sum(len(data) for data in repo.files.values())


def test_a_download_of_an_unknown_repository_is_a_404_problem(bob: APIClient):
    problem(bob.post(f"{API}/downloads/", {"repo_id": f"{ORG}/no-such-model"}, format="json"), 404)


def test_a_download_with_a_malformed_repository_id_is_a_400_problem(bob: APIClient):
    body = problem(bob.post(f"{API}/downloads/", {"repo_id": "not a repo//id"}, format="json"), 400)

    assert "repo_id" in body["errors"]


def test_a_download_that_would_fill_the_disk_is_a_507_problem_and_no_job(bob: APIClient, repo: FakeRepo, hub_settings):
    hub_settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 1 << 60

    body = problem(bob.post(f"{API}/downloads/", {"repo_id": repo.repo_id}, format="json"), 507)

    assert body["detail"].startswith("Not enough free disk space")
    assert not Download.objects.exists()


def test_pause_resume_and_cancel_move_the_job_and_refuse_what_does_not_apply(bob: APIClient, repo: FakeRepo):
    job_id = bob.post(f"{API}/downloads/", {"repo_id": repo.repo_id}, format="json").json()["id"]
    partial = download_partial_dir(Download.objects.get(pk=job_id))
    partial.mkdir(parents=True)
    (partial / "config.json.part").write_bytes(b"{")

    assert bob.post(f"{API}/downloads/{job_id}/pause/").json()["status"] == "paused"
    problem(bob.post(f"{API}/downloads/{job_id}/pause/"), 409)
    assert bob.post(f"{API}/downloads/{job_id}/resume/").json()["status"] == "queued"
    assert bob.post(f"{API}/downloads/{job_id}/cancel/").json()["status"] == "cancelled"
    assert not partial.exists()
    problem(bob.post(f"{API}/downloads/{job_id}/resume/"), 409)
    problem(bob.post(f"{API}/downloads/{job_id}/explode/"), 404)


def test_listing_downloads_costs_the_same_queries_for_one_job_or_many(bob: APIClient, django_user_model):
    from django.db import connection

    user = django_user_model.objects.get(username="bob")
    Download.objects.create(repo_id=f"{ORG}/a", requested_by=user, status=Download.Status.DONE)
    with CaptureQueriesContext(connection) as one:
        assert bob.get(f"{API}/downloads/").status_code == 200
    for name in "bcde":
        Download.objects.create(repo_id=f"{ORG}/{name}", requested_by=user, status=Download.Status.DONE)
    with CaptureQueriesContext(connection) as five:
        response = bob.get(f"{API}/downloads/")

    assert response.json()["count"] == 5
    assert len(five) == len(one)


@pytest.fixture
def local_model(hub_settings, tiny_model_dir: Path) -> LocalModel:
    import shutil

    folder = Path(hub_settings.MLXHUB_MODELS_DIR) / "mlx-community--tiny"
    shutil.copytree(tiny_model_dir, folder)
    return local_model_register(path=folder, repo_id=f"{ORG}/tiny")


def test_local_models_are_listed_with_their_profiles(charlie: APIClient, local_model: LocalModel):
    profile_upsert(name="tiny-chat", local_model=local_model)

    (listed,) = charlie.get(f"{API}/local/").json()

    assert (listed["id"], listed["repo_id"], listed["profiles"]) == (local_model.pk, f"{ORG}/tiny", ["tiny-chat"])


def test_deleting_a_local_model_used_by_a_profile_is_a_409_problem_unless_forced(
    alice: APIClient, local_model: LocalModel
):
    profile_upsert(name="tiny-chat", local_model=local_model)
    size = local_model.size_bytes

    body = problem(alice.delete(f"{API}/local/{local_model.pk}/"), 409)
    assert "tiny-chat" in body["detail"]
    assert Path(local_model.path).is_dir()

    response = alice.delete(f"{API}/local/{local_model.pk}/?force=true")
    assert response.status_code == 200, response.content
    assert response.json() == {"bytes_freed": size, "files_removed": True, "profiles_deleted": ["tiny-chat"]}
    assert not Path(local_model.path).exists()
    assert not LocalModel.objects.exists()


def test_a_member_cannot_delete_a_local_model(bob: APIClient, local_model: LocalModel):
    problem(bob.delete(f"{API}/local/{local_model.pk}/"), 403)
    assert LocalModel.objects.filter(pk=local_model.pk).exists()


def test_the_hub_token_is_stored_encrypted_and_never_returned(alice: APIClient, bob: APIClient):
    from catalog.models import HubToken
    from catalog.selectors import hub_token_value

    secret = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert alice.get(f"{API}/token/").json() == {"set": False}
    problem(bob.put(f"{API}/token/", {"token": secret}, format="json"), 403)

    response = alice.put(f"{API}/token/", {"token": secret}, format="json")

    assert response.status_code == 200 and secret not in response.content.decode()
    assert alice.get(f"{API}/token/").json() == {"set": True}
    stored = HubToken.objects.get().encrypted_token
    assert secret not in stored and hub_token_value() == secret
    assert alice.delete(f"{API}/token/").status_code == 204
    assert hub_token_value() is None
