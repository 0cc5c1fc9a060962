"""/api/routing/: credentials with a write-only secret, rules CRUD, resolve; the admin's tools."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AdminAction
from catalog.models import Profile
from routing.models import ProviderCredential, RoutingRule
from tests.mlxhub.factories import PASSWORD
from tests.routing.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(user: AbstractUser) -> APIClient:
    api_client = APIClient()
    assert api_client.login(username=user.username, password=PASSWORD)
    return api_client


def test_an_admin_creates_a_credential_and_never_reads_the_secret_back(alice: AbstractUser) -> None:
    api = logged_in(alice)
    body = {"name": "oa", "provider": "openai", "secret": SECRET}
    created = api.post("/api/routing/credentials/", body, format="json")
    assert created.status_code == 201, created.content
    listed = api.get("/api/routing/credentials/")
    detail = api.get(f"/api/routing/credentials/{created.json()['id']}/")
    for response in (created, listed, detail):
        assert SECRET not in response.content.decode()
    assert detail.json()["secret_mask"].endswith("WXYZ")
    assert "secret" not in detail.json()


def test_a_credential_without_a_secret_is_refused(alice: AbstractUser) -> None:
    response = logged_in(alice).post("/api/routing/credentials/", {"name": "oa", "provider": "openai"}, format="json")
    assert response.status_code == 400
    assert "secret" in response.content.decode()


def test_members_cannot_read_credentials_and_viewers_cannot_write_rules(
    bob: AbstractUser, charlie: AbstractUser, profile: Profile
) -> None:
    assert logged_in(bob).get("/api/routing/credentials/").status_code == 403
    rule = {"name": "r", "pattern": "x", "target_profile": profile.pk}
    assert logged_in(charlie).post("/api/routing/rules/", rule, format="json").status_code == 403
    assert logged_in(charlie).get("/api/routing/rules/").status_code == 200


def test_rules_are_created_with_fallbacks_and_resolve_says_where_a_model_goes(
    alice: AbstractUser, profile: Profile, credential: ProviderCredential
) -> None:
    api = logged_in(alice)
    rule = {
        "name": "claude",
        "pattern": "claude-*",
        "match": "glob",
        "target_credential": credential.pk,
        "target_model": "claude-sonnet-4",
        "fallbacks": [{"position": 0, "target_profile": profile.pk}],
    }
    created = api.post("/api/routing/rules/", rule, format="json")
    assert created.status_code == 201, created.content
    resolved = api.post("/api/routing/resolve/", {"model": "claude-fast"}, format="json").json()
    assert resolved == {
        "model": "claude-fast",
        "rule": "claude",
        "targets": [
            {"backend": "anthropic-main", "provider": "anthropic", "model": "claude-sonnet-4"},
            {"backend": "local", "profile": "tiny"},
        ],
    }
    api.patch(f"/api/routing/rules/{created.json()['id']}/", {"enabled": False}, format="json")
    assert api.post("/api/routing/resolve/", {"model": "claude-fast"}, format="json").json()["rule"] is None


def test_a_rule_with_two_targets_is_refused(alice: AbstractUser, profile: Profile, credential: Any) -> None:
    rule = {"name": "r", "pattern": "x", "target_profile": profile.pk, "target_credential": credential.pk,
            "target_model": "m"}  # fmt: skip
    response = logged_in(alice).post("/api/routing/rules/", rule, format="json")
    assert response.status_code == 400
    assert not RoutingRule.objects.exists()


def test_the_admin_shows_a_mask_and_answers_which_route_a_model_takes(
    alice: AbstractUser, profile: Profile, credential: ProviderCredential
) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    RoutingRule.objects.create(name="claude", pattern="claude-*", match="glob", target_credential=credential,
                               target_model="claude-sonnet-4")  # fmt: skip
    browser = Client()
    browser.force_login(alice)
    change = browser.get(f"/admin/routing/providercredential/{credential.pk}/change/").content.decode()
    assert "WXYZ" in change
    assert SECRET not in change
    assert credential.encrypted_secret not in change
    page = browser.get("/admin/routing/routingrule/resolve/", {"model": "claude-x"}).content.decode()
    assert "claude-sonnet-4" in page
    assert "anthropic-main" in page


def test_the_admin_adds_a_credential_through_the_form_with_the_secret_encrypted(alice: AbstractUser) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    browser = Client()
    browser.force_login(alice)
    form = {"name": "vllm", "provider": "openai-compatible", "base_url": "http://gpu-box:8000/v1", "secret": SECRET}
    response = browser.post("/admin/routing/providercredential/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = ProviderCredential.objects.get(name="vllm")
    assert SECRET not in saved.encrypted_secret
    assert saved.secret_last_four == "WXYZ"


def test_the_test_connection_action_reports_an_unreachable_provider(
    alice: AbstractUser, credential: ProviderCredential
) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    credential.base_url = "http://127.0.0.1:9"  # discard port: the connection is refused
    credential.save()
    browser = Client()
    browser.force_login(alice)
    response = browser.post(
        "/admin/routing/providercredential/",
        {"action": "test_connection", "_selected_action": [credential.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "could not connect" in page
    assert SECRET not in page


def test_resolve_decides_a_crafted_name_for_a_backtracking_rule_in_well_under_a_second(
    alice: AbstractUser, credential: ProviderCredential
) -> None:
    RoutingRule.objects.create(name="gpt", pattern=r"gpt-(\w+-?)+", match="regex", target_credential=credential,
                               target_model="gpt-4o")  # fmt: skip
    api = logged_in(alice)
    for name in ("gpt-" + "a-" * 90 + "!", "gpt-" + "a" * 190 + "!"):
        started = time.monotonic()
        response = api.post("/api/routing/resolve/", {"model": name}, format="json")
        assert time.monotonic() - started < 1.0
        assert response.status_code == 200, response.content
        assert response.json()["rule"] is None
    assert api.post("/api/routing/resolve/", {"model": "gpt-4o"}, format="json").json()["rule"] == "gpt"


@pytest.mark.parametrize(
    ("body", "message"),
    [({"model": "g" * 201}, "no more than 200 characters"), ({"model": ""}, "blank"), ({}, "required")],
)
def test_resolve_refuses_a_missing_or_over_long_name_with_a_problem_naming_model(
    charlie: AbstractUser, body: dict[str, str], message: str
) -> None:
    response = logged_in(charlie).post("/api/routing/resolve/", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert message in response.json()["errors"]["model"][0]


def test_a_regex_rule_that_does_not_compile_is_refused_naming_pattern(alice: AbstractUser, profile: Profile) -> None:
    rule = {"name": "r", "pattern": "gpt-(", "match": "regex", "target_profile": profile.pk}
    response = logged_in(alice).post("/api/routing/rules/", rule, format="json")
    assert response.status_code == 400
    assert "Not a valid regular expression" in response.json()["errors"]["pattern"][0]
    assert not RoutingRule.objects.exists()


def test_creating_changing_and_deleting_a_rule_through_the_api_writes_one_admin_action_each(
    alice: AbstractUser, profile: Profile, credential: ProviderCredential
) -> None:
    api = logged_in(alice)
    rule = {"name": "r", "pattern": "big", "target_profile": profile.pk}
    created = api.post("/api/routing/rules/", rule, format="json")
    assert created.status_code == 201, created.content
    url = f"/api/routing/rules/{created.json()['id']}/"
    fallback = {"target_credential": credential.pk, "target_model": "c1"}
    changed = api.patch(url, {"priority": 7, "fallbacks": [fallback]}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["fallbacks"] == [{"position": 0, "target_profile": None, **fallback}]
    assert api.delete(url).status_code == 204
    actions = AdminAction.objects.filter(object_type="routing.RoutingRule", actor=alice).order_by("pk")
    assert [action.action for action in actions] == ["created", "changed", "deleted"]
    assert actions[1].changes == {
        "priority": 7,
        "fallbacks": [
            {"position": 0, "target_profile": None, "target_credential": "anthropic-main", "target_model": "c1"}
        ],
    }


def test_a_rule_change_the_service_refuses_is_a_400_problem_and_writes_nothing(
    alice: AbstractUser, profile: Profile, credential: ProviderCredential
) -> None:
    rule = RoutingRule.objects.create(name="r", pattern="big", target_profile=profile)
    response = logged_in(alice).patch(f"/api/routing/rules/{rule.pk}/", {"target_credential": credential.pk},
                                      format="json")  # fmt: skip
    assert response.status_code == 400
    assert "either a local profile or a provider credential" in str(response.json()["errors"]["non_field_errors"])
    rule.refresh_from_db()
    assert rule.target_credential is None
    assert not AdminAction.objects.filter(object_type="routing.RoutingRule").exists()


def test_deleting_a_credential_writes_an_admin_action_and_one_a_rule_targets_is_a_409_problem(
    alice: AbstractUser, credential: ProviderCredential
) -> None:
    api = logged_in(alice)
    RoutingRule.objects.create(name="claude", pattern="c", target_credential=credential, target_model="m")
    refused = api.delete(f"/api/routing/credentials/{credential.pk}/")
    assert refused.status_code == 409
    assert refused["Content-Type"] == "application/problem+json"
    assert "claude" in refused.json()["detail"]
    assert not AdminAction.objects.filter(action="deleted").exists()

    RoutingRule.objects.all().delete()
    assert api.delete(f"/api/routing/credentials/{credential.pk}/").status_code == 204
    [action] = AdminAction.objects.filter(action="deleted", object_type="routing.ProviderCredential")
    assert (action.actor, action.object_repr) == (alice, "anthropic-main")
    assert not ProviderCredential.objects.exists()
