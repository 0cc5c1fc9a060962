"""/keys/ (a secret shown once, revoke, limits for admins) and /team/ (roles, people, the admin-action log)."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from audit.models import AdminAction
from mlxhub.accounts.models import ApiKey, Membership, Role, Team
from mlxhub.accounts.services import api_key_authenticate, api_key_create
from tests.mlxhub.factories import PASSWORD, make_user
from tests.pages.conftest import HTMX

SECRET = re.compile(r'<code id="new-key-secret">(mlxh-[A-Za-z0-9_-]+)</code>')


def create_key(browser: Client, team: Team, htmx: bool = False, **fields: Any) -> Any:
    data = {"name": "laptop", "team": str(team.pk), **fields}
    return browser.post("/keys/create/", data, **(HTMX if htmx else {}))


def test_a_member_creates_a_key_and_its_secret_is_shown_once_and_never_cached(as_bob: Client, bob: Any, team: Team):
    response = create_key(as_bob, team)

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = SECRET.search(response.content.decode()).group(1)
    api_key = api_key_authenticate(secret=secret)
    assert api_key.owner == bob and api_key.team == team and api_key.name == "laptop"
    listing = as_bob.get("/keys/").content.decode()
    assert secret not in listing and api_key.prefix in listing
    assert secret not in as_bob.get(f"/keys/{api_key.pk}/").content.decode()


def test_the_htmx_answer_puts_the_secret_in_the_panel_and_asks_the_list_to_reload(as_bob: Client, team: Team):
    response = create_key(as_bob, team, htmx=True)

    page = response.content.decode()
    assert response["HX-Trigger"] == "keys-changed" and response["Cache-Control"] == "no-store"
    assert 'hx-swap-oob="innerHTML:#key-panel"' in page and 'hx-history="false"' in page
    assert SECRET.search(page) and 'id="key-form"' in page


def test_a_key_takes_allowed_models_and_an_expiry(as_bob: Client, team: Team, tiny_profile: Any):
    create_key(as_bob, team, allowed_models=["tiny-chat"], expires_on="2099-01-31")

    api_key = ApiKey.objects.get()
    assert api_key.allowed_models == ["tiny-chat"]
    assert api_key.expires_at is not None and api_key.expires_at.year == 2099


def test_a_bad_key_form_comes_back_with_its_errors_as_a_422(as_bob: Client, team: Team):
    response = create_key(as_bob, team, name="", expires_on="2001-01-01")

    assert response.status_code == 422
    page = response.content.decode()
    assert "This field is required." in page and "Choose a day after today." in page
    assert not ApiKey.objects.exists()


def test_a_member_cannot_make_a_key_for_a_team_they_are_not_in(as_bob: Client):
    other = Team.objects.create(name="Elsewhere", slug="elsewhere")

    assert create_key(as_bob, other).status_code == 422
    assert not ApiKey.objects.exists()


def test_limits_are_the_admins_to_set(as_bob: Client, as_alice: Client, bob: Any, team: Team):
    create_key(as_bob, team, **{"limits-rpm": "1000"})  # a member's form has no limits: ignored
    api_key = ApiKey.objects.get()
    assert api_key.rpm is None
    assert as_bob.post(f"/keys/{api_key.pk}/limits/", {"limits-rpm": "1000"}).status_code == 403

    response = as_alice.post(
        f"/keys/{api_key.pk}/limits/",
        {"limits-rpm": "60", "limits-token_budget": "5000", "limits-budget_period": "day"},
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert (api_key.rpm, api_key.token_budget, api_key.budget_period) == (60, 5000, "day")
    assert AdminAction.objects.filter(object_type="accounts.ApiKey", actor__username="alice").exists()


def test_an_admin_sets_limits_when_making_a_key(as_alice: Client, team: Team):
    create_key(as_alice, team, **{"limits-tpm": "9000", "limits-budget_period": "month"})

    assert ApiKey.objects.get().tpm == 9000


def test_revoking_a_key_answers_its_row_and_the_key_stops_working(as_bob: Client, bob: Any, team: Team):
    created = api_key_create(owner=bob, name="old", team=team)

    response = as_bob.post(f"/keys/{created.api_key.pk}/revoke/", **HTMX)

    assert response.status_code == 200 and "revoked" in response.content.decode()
    created.api_key.refresh_from_db()
    assert created.api_key.is_revoked


def test_members_see_only_their_own_keys(as_bob: Client, as_charlie: Client, bob: Any, charlie: Any, team: Team):
    mine = api_key_create(owner=bob, name="bobs", team=team).api_key
    theirs = api_key_create(owner=charlie, name="charlies", team=team).api_key

    assert "bobs" in as_bob.get("/keys/").content.decode()
    assert "charlies" not in as_bob.get("/keys/").content.decode()
    assert as_bob.get(f"/keys/{theirs.pk}/").status_code == 404
    assert as_bob.post(f"/keys/{theirs.pk}/revoke/").status_code == 404
    assert as_charlie.get(f"/keys/{mine.pk}/").status_code == 404


def test_the_snippets_name_this_servers_base_url(as_bob: Client, tiny_profile: Any):
    page = as_bob.get("/keys/").content.decode()

    assert "http://testserver/v1/chat/completions" in page
    assert 'base_url="http://testserver/v1"' in page and 'base_url="http://testserver"' in page
    assert '"model": "tiny-chat"' in page


# /team/
def role_of(username: str, team: Team) -> str:
    return Membership.objects.get(team=team, user__username=username).role


def test_an_admin_changes_a_role_and_the_change_is_in_the_team_log(as_alice: Client, bob: Any, team: Team):
    membership = Membership.objects.get(user=bob)

    response = as_alice.post(f"/team/members/{membership.pk}/role/", {"role": "viewer"}, **HTMX)

    assert response.status_code == 200 and response["HX-Trigger"] == "team-changed"
    assert role_of("bob", team) == Role.VIEWER
    log = as_alice.get(f"/team/log/?team={team.slug}", **HTMX).content.decode()
    assert "membership" in log and "bob in Research (viewer)" in log and "role=viewer" in log
    assert "alice" in log


def test_nobody_changes_their_own_role(as_alice: Client, alice: Any, team: Team):
    membership = Membership.objects.get(user=alice)

    response = as_alice.post(f"/team/members/{membership.pk}/role/", {"role": "viewer"}, **HTMX)

    assert response.status_code == 409 and "your own role" in response.content.decode()
    assert role_of("alice", team) == Role.ADMIN


def test_an_admin_of_one_team_cannot_change_another_teams_people(as_alice: Client):
    other = Team.objects.create(name="Other", slug="other")
    dora = make_user("dora", team=other, role=Role.MEMBER)
    membership = Membership.objects.get(user=dora)

    response = as_alice.post(f"/team/members/{membership.pk}/role/", {"role": "admin"})

    assert response.status_code == 302
    assert role_of("dora", other) == Role.MEMBER
    assert as_alice.post("/team/add/", {"team": "other", "username": "eve", "role": "admin"}).status_code == 404


def test_an_admin_adds_a_person_who_then_signs_in_with_the_password_shown_once(as_alice: Client, team: Team):
    response = as_alice.post("/team/add/", {"team": team.slug, "username": "erin", "role": "member"})

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    password = re.search(r'<code id="new-password">([^<]+)</code>', response.content.decode()).group(1)
    assert Client().post("/login/", {"username": "erin", "password": password}).status_code == 302
    assert role_of("erin", team) == Role.MEMBER


def test_adding_a_taken_name_comes_back_with_the_reason(as_alice: Client, bob: Any, team: Team):
    response = as_alice.post("/team/add/", {"team": team.slug, "username": "bob", "role": "member", "password": "x"})

    assert response.status_code == 422 and "already exists" in response.content.decode()


def test_a_deactivated_person_can_no_longer_sign_in_and_their_keys_stop(as_alice: Client, bob: Any, team: Team):
    created = api_key_create(owner=bob, name="laptop", team=team)
    membership = Membership.objects.get(user=bob)

    as_alice.post(f"/team/members/{membership.pk}/active/", {"active": "0"}, **HTMX)

    assert Client().post("/login/", {"username": "bob", "password": PASSWORD}).status_code == 200
    bob.refresh_from_db()
    assert not bob.is_active
    try:
        api_key_authenticate(secret=created.secret)
    except Exception as exc:
        assert "deactivated" in str(exc)
    else:
        raise AssertionError("a deactivated owner's key still works")
    as_alice.post(f"/team/members/{membership.pk}/active/", {"active": "1"})
    bob.refresh_from_db()
    assert bob.is_active


def test_an_admin_cannot_deactivate_themselves(as_alice: Client, alice: Any):
    membership = Membership.objects.get(user=alice)

    assert as_alice.post(f"/team/members/{membership.pk}/active/", {"active": "0"}, **HTMX).status_code == 409
    alice.refresh_from_db()
    assert alice.is_active


def test_members_see_the_team_but_no_controls(as_bob: Client, alice: Any, team: Team):
    page = as_bob.get("/team/").content.decode()

    assert "alice" in page and "bob" in page
    assert "Add a person" not in page and '<select name="role"' not in page and "Deactivate" not in page
