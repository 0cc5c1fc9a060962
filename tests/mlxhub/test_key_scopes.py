"""Key scopes (inference: /v1; control: /api too), what a member may change on a key, a key's team membership,
and keys that would act as a superuser."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from mlxhub.accounts.models import ApiKey, KeyScope, Membership, Role
from mlxhub.accounts.services import AccountError, ApiKeyError, api_key_authenticate, api_key_create
from mlxhub.services import bootstrap_run
from tests.mlxhub.factories import make_user


def with_key(secret: str) -> APIClient:
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def signed_in(user: User) -> APIClient:
    api_client = APIClient()
    api_client.force_authenticate(user)
    return api_client


# Scopes.
def test_a_new_key_is_an_inference_key_that_calls_v1_but_not_the_control_api(bob, team, make_api_key):
    created = make_api_key(bob, team=team)

    assert created.api_key.scope == KeyScope.INFERENCE
    assert Client().get("/v1/models", headers={"Authorization": f"Bearer {created.secret}"}).status_code == 200
    refused = with_key(created.secret).get("/api/keys/")
    assert refused.status_code == 403
    assert "scope is inference" in refused.json()["detail"] and "control key" in refused.json()["detail"]


def test_an_inference_key_cannot_mint_another_key(bob, team, make_api_key):
    secret = make_api_key(bob, team=team).secret

    assert with_key(secret).post("/api/keys/", {"name": "replacement"}, format="json").status_code == 403
    assert ApiKey.objects.count() == 1


def test_a_control_key_calls_both_planes_and_makes_keys_for_its_owner(bob, team, make_api_key):
    secret = make_api_key(bob, team=team, scope=KeyScope.CONTROL).secret

    made = with_key(secret).post("/api/keys/", {"name": "ci"}, format="json")

    assert made.status_code == 201 and made.json()["scope"] == "inference"
    assert ApiKey.objects.get(name="ci").owner == bob
    assert Client().get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_a_member_chooses_the_control_scope_when_making_a_key_in_a_session(bob, team):
    made = signed_in(bob).post("/api/keys/", {"name": "scripts", "scope": "control"}, format="json")

    assert made.status_code == 201 and ApiKey.objects.get(name="scripts").scope == KeyScope.CONTROL


def test_the_bootstrap_key_is_a_control_key(db, settings, tmp_path):
    settings.MLXHUB_MODELS_DIR = tmp_path
    settings.MLXHUB_DEMO_PRESET = "tiny"
    settings.MLXHUB_API_KEY = ""

    secret = bootstrap_run(migrate=False).api_key

    assert secret and api_key_authenticate(secret=secret).scope == KeyScope.CONTROL
    assert with_key(secret).get("/api/keys/").status_code == 200


def test_keys_made_before_scopes_keep_the_control_api_only_when_an_admin_owns_them(alice, bob, charlie, team):
    root = make_user("root", is_superuser=True, is_staff=True)
    keys = {user.username: api_key_create(owner=user, name="old", team=team).api_key for user in (alice, bob, charlie)}
    keys["root"] = api_key_create(owner=root, name="old").api_key
    migration = importlib.import_module("mlxhub.accounts.migrations.0005_api_key_scope")

    migration.existing_keys_of_admins_keep_the_control_api(apps, None)

    scopes = {name: ApiKey.objects.get(pk=key.pk).scope for name, key in keys.items()}
    assert scopes == {"alice": "control", "root": "control", "bob": "inference", "charlie": "inference"}


# What a member may change on their own key.
@pytest.mark.parametrize(
    "change",
    [{"allowed_models": []}, {"expires_at": None}, {"scope": "control"}, {"rpm": 1000}, {"team": None}],
    ids=lambda change: next(iter(change)),
)
def test_a_member_cannot_lift_the_restrictions_of_their_key(bob, team, make_api_key, change):
    api_key = make_api_key(
        bob, team=team, allowed_models=["tiny-chat"], expires_at="2099-01-01T00:00:00Z", limits={"rpm": 5}
    ).api_key

    response = signed_in(bob).patch(f"/api/keys/{api_key.pk}/", change, format="json")

    assert response.status_code == 400, response.content
    refreshed = ApiKey.objects.get(pk=api_key.pk)
    assert (refreshed.allowed_models, refreshed.scope, refreshed.rpm) == (["tiny-chat"], "inference", 5)
    assert refreshed.expires_at is not None and refreshed.team == team


def test_a_member_renames_their_key_and_an_admin_lifts_its_restrictions(alice, bob, team, make_api_key):
    api_key = make_api_key(bob, team=team, allowed_models=["tiny-chat"]).api_key

    assert signed_in(bob).patch(f"/api/keys/{api_key.pk}/", {"name": "renamed"}, format="json").status_code == 200
    lifted = signed_in(alice).patch(
        f"/api/keys/{api_key.pk}/", {"allowed_models": [], "scope": "control"}, format="json"
    )

    assert lifted.status_code == 200, lifted.content
    refreshed = ApiKey.objects.get(pk=api_key.pk)
    assert (refreshed.name, refreshed.allowed_models, refreshed.scope) == ("renamed", [], "control")


def test_the_keys_page_lets_a_member_rename_only(bob, team, make_api_key):
    api_key = make_api_key(bob, team=team, allowed_models=["tiny-chat"], expires_at="2099-01-01T00:00:00Z").api_key
    browser = Client()
    browser.force_login(bob)

    page = browser.get(f"/keys/{api_key.pk}/").content.decode()
    response = browser.post(f"/keys/{api_key.pk}/edit/", {"name": "renamed", "expires_on": "", "scope": "control"})

    assert 'name="allowed_models"' not in page and 'name="expires_on"' not in page
    assert response.status_code == 302
    refreshed = ApiKey.objects.get(pk=api_key.pk)
    assert (refreshed.name, refreshed.allowed_models, refreshed.scope) == ("renamed", ["tiny-chat"], "inference")
    assert refreshed.expires_at is not None


def test_the_keys_page_makes_an_inference_key_unless_control_is_chosen(bob, team):
    browser = Client()
    browser.force_login(bob)

    browser.post("/keys/create/", {"name": "app", "team": str(team.pk)})
    browser.post("/keys/create/", {"name": "scripts", "team": str(team.pk), "scope": "control"})

    assert dict(ApiKey.objects.values_list("name", "scope")) == {"app": "inference", "scripts": "control"}


# A key belongs to its owner's membership of its team.
def test_leaving_a_team_ends_the_keys_made_for_it(alice, bob, team, make_api_key):
    created = make_api_key(bob, team=team)
    other_team_key = make_api_key(bob, name="own")  # no team: not tied to a membership
    assert api_key_authenticate(secret=created.secret)

    Membership.objects.get(user=bob, team=team).delete()

    with pytest.raises(ApiKeyError) as refused:
        api_key_authenticate(secret=created.secret)
    assert refused.value.code == "not_a_team_member"
    answer = Client().get("/v1/models", headers={"Authorization": f"Bearer {created.secret}"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "not_a_team_member"
    assert api_key_authenticate(secret=other_team_key.secret)


def test_removing_a_member_in_the_team_admin_ends_their_keys_on_v1(team, bob, make_api_key):
    root = make_user("root", team=team, role=Role.ADMIN, is_superuser=True, is_staff=True)
    created = make_api_key(bob, team=team)
    v1 = Client()
    headers = {"Authorization": f"Bearer {created.secret}"}
    assert v1.get("/v1/models", headers=headers).status_code == 200  # now remembered by the key cache
    from mlxhub.accounts.services import membership_remove

    membership_remove(membership=Membership.objects.get(user=bob, team=team), actor=root)

    assert v1.get("/v1/models", headers=headers).status_code == 401


def test_a_superusers_key_for_a_team_they_do_not_belong_to_works(team):
    root = make_user("root", is_superuser=True, is_staff=True)
    created = api_key_create(owner=root, name="ops", team=team)

    assert api_key_authenticate(secret=created.secret).owner == root


# Keys that would act as a superuser.
def test_a_staff_user_cannot_make_a_key_owned_by_a_superuser(team):
    root = make_user("root", is_superuser=True, is_staff=True)
    staff = make_user("sam", is_staff=True)

    with pytest.raises(AccountError):
        api_key_create(owner=root, name="borrowed", actor=staff)
    assert api_key_create(owner=root, name="own", actor=root).api_key.owner == root


def test_the_admin_add_form_offers_a_staff_user_no_superuser_as_owner(team, settings):
    settings.STORAGES = {  # the in-process suite runs no collectstatic (see tests/mlxhub/test_admin.py)
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from django.contrib.auth.models import Permission

    root = make_user("root", is_superuser=True, is_staff=True)
    staff = make_user("sam", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_apikey", "view_apikey", "view_user"]))
    browser = Client()
    browser.force_login(staff)

    response = browser.post(
        "/admin/accounts/apikey/add/", {"name": "borrowed", "owner": str(root.pk), "scope": "control"}
    )

    assert response.status_code == 200  # the form again, with the reason
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.exists()
