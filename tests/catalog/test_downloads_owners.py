"""Who may change a download: a member pauses, resumes or cancels the jobs they asked for, an admin any.

Both doors are tried: the control API (its refusal is a 403 problem) and the /downloads/ page's buttons
(a 403, and no buttons on rows that are not yours). Jobs are rows as the worker leaves them; no worker runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Download
from mlxhub.accounts.models import Role, Team
from tests.catalog.test_catalog_api import API, problem
from tests.mlxhub.factories import make_user

HTMX = {"HTTP_HX_REQUEST": "true"}
ACTIONS = ["pause", "cancel", "resume"]


@pytest.fixture
def people(db, team: Team) -> dict[str, Any]:
    return {
        "alice": make_user("alice", team=team, role=Role.ADMIN),
        "bob": make_user("bob", team=team, role=Role.MEMBER),
        "dave": make_user("dave", team=team, role=Role.MEMBER),
    }


def api_as(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page_as(user: Any) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def job(owner: Any, status: str) -> Download:
    return Download.objects.create(
        repo_id=f"org/owned-{Download.objects.count()}", status=status, requested_by=owner, bytes_total=10
    )


STARTING = {"pause": "running", "cancel": "queued", "resume": "paused"}


@pytest.mark.parametrize("action", ACTIONS)
def test_a_member_cannot_change_another_members_download_through_the_api(people, action):
    download = job(people["bob"], STARTING[action])

    body = problem(api_as(people["dave"]).post(f"{API}/downloads/{download.pk}/{action}/"), 403)

    assert "only the downloads they asked for" in body["detail"]
    download.refresh_from_db()
    assert download.status == STARTING[action]


@pytest.mark.parametrize("action", ACTIONS)
def test_a_member_changes_their_own_download_and_an_admin_changes_anyones(people, action):
    mine, theirs = job(people["bob"], STARTING[action]), job(people["dave"], STARTING[action])
    expected = {"pause": "paused", "cancel": "cancelled", "resume": "queued"}[action]

    own = api_as(people["bob"]).post(f"{API}/downloads/{mine.pk}/{action}/")
    admin = api_as(people["alice"]).post(f"{API}/downloads/{theirs.pk}/{action}/")

    assert (own.status_code, own.json()["status"]) == (200, expected)
    assert (admin.status_code, admin.json()["status"]) == (200, expected)


def test_a_job_nobody_asked_for_is_changed_by_admins_only(people):
    orphan = job(None, "running")

    problem(api_as(people["bob"]).post(f"{API}/downloads/{orphan.pk}/pause/"), 403)
    assert api_as(people["alice"]).post(f"{API}/downloads/{orphan.pk}/pause/").json()["status"] == "paused"


def test_an_unknown_download_is_still_a_404_problem(people):
    problem(api_as(people["dave"]).post(f"{API}/downloads/999999/pause/"), 404)


@pytest.mark.parametrize("action", ACTIONS)
def test_the_downloads_page_refuses_a_member_acting_on_another_members_job(people, action):
    download = job(people["bob"], STARTING[action])
    dave = page_as(people["dave"])

    fragment = dave.post(f"/downloads/{download.pk}/{action}/", **HTMX)
    plain = dave.post(f"/downloads/{download.pk}/{action}/")

    assert fragment.status_code == 403 and "only the downloads they asked for" in fragment.content.decode()
    assert plain.status_code == 403
    download.refresh_from_db()
    assert download.status == STARTING[action]


def test_the_downloads_page_shows_buttons_only_on_the_rows_you_may_change(people):
    mine, theirs = job(people["bob"], "running"), job(people["dave"], "running")

    as_bob = page_as(people["bob"]).get("/downloads/", **HTMX).content.decode()
    as_alice = page_as(people["alice"]).get("/downloads/", **HTMX).content.decode()

    assert f"/downloads/{mine.pk}/pause/" in as_bob and f"/downloads/{theirs.pk}/pause/" not in as_bob
    assert f"/downloads/{mine.pk}/pause/" in as_alice and f"/downloads/{theirs.pk}/pause/" in as_alice
    assert page_as(people["bob"]).post(f"/downloads/{mine.pk}/pause/", **HTMX).status_code == 200
