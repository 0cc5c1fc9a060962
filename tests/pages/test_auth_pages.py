"""Sign-in for every role, roles enforced on every page and action, and manage.py user_add."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AdminAction
from mlxhub.accounts.models import Membership, Role, Team
from mlxhub.accounts.services import api_key_create
from tests.mlxhub.factories import PASSWORD, make_user
from tests.pages.conftest import HTMX, make_download

PAGES = ["/", "/models/", "/discover/", "/downloads/", "/playground/", "/keys/", "/usage/", "/team/"]

# Every write a member may make, with a body that would be valid: a viewer gets 403 on each, posted directly.
MEMBER_WRITES = [
    "/keys/create/",
    "/keys/1/revoke/",
    "/keys/1/edit/",
    "/models/profiles/",
    "/models/profiles/tiny-chat/save/",
    "/models/profiles/tiny-chat/delete/",
    "/models/profiles/tiny-chat/load/",
    "/models/profiles/tiny-chat/unload/",
    "/models/profiles/tiny-chat/pin/",
    "/downloads/start/",
    "/downloads/1/pause/",
    "/downloads/1/resume/",
    "/downloads/1/cancel/",
]
# And what only admins do.
ADMIN_WRITES = [
    "/keys/1/limits/",
    "/team/add/",
    "/team/members/1/role/",
    "/team/members/1/active/",
    "/routing/credentials/",
    "/routing/credentials/1/test/",
]
ADMIN_PAGES = ["/routing/", "/routing/resolve/?model=demo"]


@pytest.mark.parametrize("username", ["alice", "bob", "charlie"])
def test_every_role_signs_in_at_the_login_page_with_username_and_password(
    username: str, alice: Any, bob: Any, charlie: Any
):
    browser = Client()
    response = browser.post("/login/", {"username": username, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/"
    assert not get_user_model().objects.get(username=username).is_staff  # no admin rights needed
    assert browser.get("/").status_code == 200


def test_a_wrong_password_is_refused_in_words(bob: Any):
    response = Client().post("/login/", {"username": "bob", "password": "nope"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back_to_the_page_after(bob: Any):
    browser = Client()
    response = browser.get("/usage/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/usage/"

    response = browser.post("/login/?next=/usage/", {"username": "bob", "password": PASSWORD, "next": "/usage/"})

    assert response["Location"] == "/usage/"


def test_an_expired_session_sends_htmx_to_the_sign_in_page(db: None):
    response = Client().get("/downloads/", **HTMX)

    assert response.status_code == 401 and response["HX-Redirect"] == "/login/?next=/downloads/"


def test_signing_out_is_a_post_and_ends_the_session(as_bob: Client):
    assert as_bob.post("/logout/").status_code == 302
    assert as_bob.get("/").status_code == 302


def test_someone_in_no_team_signs_in_and_is_told_to_ask_for_one(db: None):
    make_user("loner")
    browser = Client()
    browser.post("/login/", {"username": "loner", "password": PASSWORD})

    response = browser.get("/")

    assert response.status_code == 403
    assert "not a member of any team" in response.content.decode()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_opens_for_a_viewer(as_charlie: Client, path: str):
    assert as_charlie.get(path).status_code == 200


@pytest.mark.parametrize("path", MEMBER_WRITES + ADMIN_WRITES)
def test_a_viewer_gets_403_on_every_write_endpoint_even_posting_directly(as_charlie: Client, path: str):
    assert as_charlie.post(path, {"name": "x", "repo_id": "mlx-community/x", "role": "admin"}).status_code == 403
    assert as_charlie.post(path, {"name": "x"}, **HTMX).status_code == 403


@pytest.mark.parametrize("path", ADMIN_WRITES)
def test_a_member_gets_403_on_what_only_admins_do(as_bob: Client, path: str):
    assert as_bob.post(path, {"role": "admin", "username": "mallory"}).status_code == 403


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_routing_is_for_admins_only(as_bob: Client, as_alice: Client, path: str):
    assert as_bob.get(path).status_code == 403
    assert as_alice.get(path).status_code == 200


def test_a_refused_htmx_action_answers_a_reason_in_words(as_charlie: Client):
    response = as_charlie.post("/keys/create/", {"name": "x"}, **HTMX)

    assert response["Content-Type"].startswith("text/plain")
    assert "Viewers can look but not change anything" in response.content.decode()


def test_a_viewer_sees_no_create_download_load_or_unload_controls(
    as_charlie: Client, charlie: Any, team: Team, tiny_profile: Any
):
    make_download("mlx-community/tiny-llama-bf16")
    api_key_create(owner=charlie, name="given-by-an-admin", team=team)
    pages = "".join(as_charlie.get(path).content.decode() for path in PAGES)

    for control in ("Create key", ">Download<", ">Load<", ">Unload<", "Create profile", "Revoke", ">Pin<"):
        assert control not in pages
    assert "Add a person" not in pages and "Deactivate" not in pages


def test_the_navigation_offers_routing_to_admins_only(as_bob: Client, as_alice: Client):
    assert 'href="/routing/"' not in as_bob.get("/").content.decode()
    assert 'href="/routing/"' in as_alice.get("/").content.decode()


def test_the_admin_is_branded_mlx_hub_and_links_back_to_the_pages(as_root: Client):
    page = as_root.get("/admin/").content.decode()

    assert "MLX Hub" in page and "Django administration" not in page
    assert 'href="/"' in page
    assert 'href="/admin/"' in as_root.get("/").content.decode()


def test_a_password_change_is_audited_without_the_password(as_bob: Client, bob: Any):
    response = as_bob.post(
        "/password/",
        {"old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )

    assert response.status_code == 302 and response["Location"] == "/password/done/"
    bob.refresh_from_db()
    assert bob.check_password("a-new-long-passphrase")
    row = AdminAction.objects.get(object_type="auth.User", object_id=str(bob.pk))
    assert row.changes == {"password": "(changed)"} and row.actor == bob


# manage.py user_add
def test_user_add_makes_a_user_who_signs_in_with_the_password_printed_once(db: None):
    out = StringIO()
    call_command("user_add", "erin", "--team", "Research", "--role", "member", stdout=out)

    printed = out.getvalue()
    password = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("Password: "))
    assert "created team 'Research'" in printed
    membership = Membership.objects.select_related("team", "user").get(user__username="erin")
    assert membership.role == Role.MEMBER and membership.team.slug == "research"
    assert not membership.user.is_staff
    assert Client().post("/login/", {"username": "erin", "password": password}).status_code == 302
    assert AdminAction.objects.filter(object_type="auth.User", object_id=str(membership.user_id)).exists()


def test_user_add_with_a_password_prints_none_and_joins_an_existing_team_by_slug(team: Team):
    out = StringIO()
    call_command(
        "user_add", "frank", "--team", "research", "--role", "viewer", "--password", "frank-pass-1234", stdout=out
    )

    assert "Password" not in out.getvalue()
    assert Team.objects.count() == 1
    assert Membership.objects.get(user__username="frank").role == Role.VIEWER


def test_user_add_refuses_a_taken_name_a_weak_password_and_an_unknown_role(bob: Any):
    with pytest.raises(CommandError, match="already exists"):
        call_command("user_add", "BOB", "--team", "research", "--role", "member")
    with pytest.raises(CommandError, match=r"too common|too short"):
        call_command("user_add", "gina", "--team", "research", "--role", "member", "--password", "password")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("user_add", "gina", "--team", "research", "--role", "owner")
    assert not get_user_model().objects.filter(username="gina").exists()


def test_a_member_sees_the_controls_a_viewer_does_not(as_bob: Client, bob: Any, team: Team, tiny_profile: Any):
    make_download("mlx-community/tiny-llama-bf16", requested_by=bob)  # members change their own downloads
    api_key_create(owner=bob, name="laptop", team=team)
    pages = "".join(as_bob.get(path).content.decode() for path in PAGES)

    for control in ("Create key", ">Load<", "Create profile", "Revoke", ">Pin<", ">Pause<"):
        assert control in pages
