"""Admin-action audit, the audit trail's API, retention and logging, in-process."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AdminAction, AuditLog
from audit.tasks import audit_log_purge_expired
from catalog.models import Profile
from catalog.services import local_model_register
from mlxhub.accounts.models import Membership
from mlxhub.accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    membership_remove,
    membership_set,
    team_create,
    team_update,
)
from mlxhub.logging import JsonFormatter, RequestIdFilter, request_id_var
from tests.mlxhub.factories import make_user

pytestmark = pytest.mark.django_db


def actions_for(obj: object) -> list[AdminAction]:
    return list(
        AdminAction.objects.filter(object_type=obj._meta.label, object_id=str(obj.pk)).order_by("pk")  # type: ignore[attr-defined]
    )


@pytest.mark.services
def test_key_changes_are_audited_by_their_services_and_never_carry_the_secret(alice, bob):
    created = api_key_create(owner=bob, name="ci", actor=alice, limits={"rpm": 60})
    api_key_update(api_key=created.api_key, actor=alice, name="ci-renamed", tpm=50_000)
    api_key_revoke(api_key=created.api_key, actor=alice)

    actions = actions_for(created.api_key)
    assert [action.action for action in actions] == ["created", "changed", "revoked"]
    assert all(action.actor == alice for action in actions)
    assert actions[0].changes["rpm"] == 60 and actions[0].changes["owner"] == "bob"
    assert actions[1].changes == {"name": "ci-renamed", "tpm": 50_000}
    dump = json.dumps(list(AdminAction.objects.values()), default=str)
    assert created.secret not in dump and created.api_key.hashed_key not in dump


@pytest.mark.services
def test_team_and_membership_changes_are_audited(alice):
    team = team_create(name="Ops", slug="ops", actor=alice, limits={"token_budget": 2_000_000})
    team_update(team=team, actor=alice, rpm=100)
    carol = make_user("carol")
    membership = membership_set(team=team, user=carol, role="member", actor=alice)
    membership_set(team=team, user=carol, role="viewer", actor=alice)
    membership_remove(membership=membership, actor=alice)

    assert [a.action for a in actions_for(team)] == ["created", "changed"]
    assert actions_for(team)[0].changes["token_budget"] == 2_000_000
    membership_actions = AdminAction.objects.filter(object_type="accounts.Membership").order_by("pk")
    assert [a.action for a in membership_actions] == ["created", "changed", "deleted"]
    assert membership_actions[1].changes["role"] == "viewer"
    assert not Membership.objects.filter(team=team, user=carol).exists()


def test_a_profile_edited_in_the_admin_is_audited(client, tiny_model_dir):
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    local_model = local_model_register(path=tiny_model_dir)

    response = client.post(
        "/admin/catalog/profile/add/",
        {
            "name": "writer",
            "local_model": local_model.pk,
            "enabled": "on",
            "default_max_tokens": 128,
            "system_prompt": "Be brief.",
        },
    )

    assert response.status_code == 302, response.content[:500]
    profile = Profile.objects.get(name="writer")
    (action,) = actions_for(profile)
    assert action.action == "created" and action.actor == admin_user
    assert action.changes["default_max_tokens"] == 128


def test_a_password_change_in_the_admin_is_audited_without_the_password(client):
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    dave = make_user("dave")

    response = client.post(
        f"/admin/auth/user/{dave.pk}/password/",
        {"password1": "a-new-Passw0rd-9", "password2": "a-new-Passw0rd-9", "usable_password": "true"},
    )

    assert response.status_code == 302
    (action,) = actions_for(dave)
    assert action.changes == {"password": "(changed)"}
    assert "a-new-Passw0rd-9" not in json.dumps(action.changes)


def make_row(user, **overrides):
    values = {
        "created_at": timezone.now(),
        "request_id": "req",
        "user": user,
        "key_prefix": "mlxh-abc",
        "endpoint": "chat.completions",
        "model_requested": "demo",
        "model_served": "demo",
        "backend": "local",
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    return AuditLog.objects.create(**{**values, **overrides})


def test_the_audit_api_filters_rows_and_members_see_only_their_own(alice, bob):
    make_row(alice, request_id="a1", model_requested="demo")
    make_row(bob, request_id="b1", model_requested="other", status_code=429)
    make_row(bob, request_id="b2", created_at=timezone.now() - timedelta(days=3))
    api = APIClient()

    api.force_authenticate(alice)
    assert {row["request_id"] for row in api.get("/api/audit/").json()["results"]} == {"a1", "b1", "b2"}
    assert [row["request_id"] for row in api.get("/api/audit/", {"status": 429}).json()["results"]] == ["b1"]
    assert [row["request_id"] for row in api.get("/api/audit/", {"model": "other"}).json()["results"]] == ["b1"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert {row["request_id"] for row in api.get("/api/audit/", {"since": since}).json()["results"]} == {"a1", "b1"}

    api.force_authenticate(bob)
    assert {row["request_id"] for row in api.get("/api/audit/").json()["results"]} == {"b1", "b2"}
    assert api.get("/api/audit/", {"status": "lots"}).status_code == 400


def test_usage_sums_tokens_and_requests_by_key_team_and_model(alice, team):
    make_row(alice, key_prefix="mlxh-one", team=team, prompt_tokens=10, completion_tokens=5)
    make_row(alice, key_prefix="mlxh-one", team=team, prompt_tokens=20, completion_tokens=1, model_requested="b")
    make_row(alice, key_prefix="mlxh-two", prompt_tokens=7, completion_tokens=0)
    api = APIClient()
    api.force_authenticate(alice)

    by_key = {row["key"]: row for row in api.get("/api/usage/", {"group_by": "key"}).json()["results"]}
    by_model = {row["model"]: row for row in api.get("/api/usage/", {"group_by": "model"}).json()["results"]}
    by_team = {
        row["team"]: row for row in api.get("/api/usage/", {"group_by": "team", "period": "day"}).json()["results"]
    }

    assert by_key["mlxh-one"]["requests"] == 2 and by_key["mlxh-one"]["total_tokens"] == 36
    assert by_key["mlxh-two"]["total_tokens"] == 7
    assert by_model["b"]["prompt_tokens"] == 20
    assert by_team["research"]["requests"] == 2


def test_the_retention_task_purges_only_rows_older_than_the_setting(alice, settings):
    settings.MLXHUB_AUDIT_RETENTION_DAYS = 30
    make_row(alice, request_id="old", created_at=timezone.now() - timedelta(days=31))
    make_row(alice, request_id="new", created_at=timezone.now() - timedelta(days=29))

    assert audit_log_purge_expired() == 1
    assert list(AuditLog.objects.values_list("request_id", flat=True)) == ["new"]


def test_the_audit_changelist_exports_csv_and_keeps_its_query_count(client, django_assert_max_num_queries):
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    rows = [make_row(admin_user, request_id=f"r{index}") for index in range(30)]

    with django_assert_max_num_queries(12):
        assert client.get("/admin/audit/auditlog/").status_code == 200
    response = client.post(
        "/admin/audit/auditlog/",
        {"action": "export_csv", "_selected_action": [row.pk for row in rows[:3]]},
    )

    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("created_at,request_id") and len(lines) == 4


def test_log_lines_are_json_with_the_request_id():
    record = logging.LogRecord("mlxhub.test", logging.INFO, __file__, 1, "served %s", ("demo",), None)
    token = request_id_var.set("req_log_test")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)

    line = json.loads(JsonFormatter().format(record))

    assert line["request_id"] == "req_log_test"
    assert line["message"] == "served demo" and line["level"] == "INFO"


def test_teams_take_limits_from_admins_only(alice, bob):
    api = APIClient()
    api.force_authenticate(bob)
    assert api.post("/api/teams/", {"name": "Big", "slug": "big", "token_budget": 2_000_000}).status_code == 403

    api.force_authenticate(alice)
    response = api.post(
        "/api/teams/", {"name": "Big", "slug": "big", "token_budget": 2_000_000, "budget_period": "month", "rpm": 600}
    )

    assert response.status_code == 201
    assert response.json()["token_budget"] == 2_000_000
    detail = api.get(f"/api/teams/{response.json()['id']}/").json()
    assert detail["usage"] == {"requests_in_window": 0, "tokens_in_window": 0, "concurrent": 0, "budget_used": 0}


def test_a_team_saved_in_the_admin_with_a_new_member_is_audited(client):
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    erin = make_user("erin")
    client.force_login(admin_user)

    response = client.post(
        "/admin/accounts/team/add/",
        {
            "name": "Platform",
            "slug": "platform",
            "budget_period": "month",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": erin.pk,
            "memberships-0-role": "member",
        },
    )

    assert response.status_code == 302, response.content[:800]
    assert Membership.objects.filter(team__slug="platform", user=erin, role="member").exists()
    kinds = set(AdminAction.objects.values_list("object_type", "action"))
    assert {("accounts.Team", "created"), ("accounts.Membership", "created")} <= kinds


def test_a_member_cannot_lift_the_limits_of_their_own_key(bob):
    created = api_key_create(owner=bob, name="mine", team=bob.teams.first())
    api = APIClient()
    api.force_authenticate(bob)

    lifted = api.patch(f"/api/keys/{created.api_key.pk}/", {"token_budget": None, "team": None}, format="json")
    new_key = api.post("/api/keys/", {"name": "fresh"}, format="json")

    assert lifted.status_code == 400
    assert new_key.status_code == 201 and new_key.json()["team"] == "research"


def test_the_keys_of_a_deactivated_user_stop_working(bob):
    created = api_key_create(owner=bob, name="mine")
    bob.is_active = False
    bob.save()
    api = APIClient()

    response = api.get("/api/keys/", HTTP_AUTHORIZATION=f"Bearer {created.secret}")

    assert response.status_code in (401, 403)
    assert "deactivated" in response.json()["detail"]


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx=1", "\r=1"])
def test_the_csv_export_neutralises_cells_a_spreadsheet_would_run(client, dangerous):
    import csv
    import io

    admin_user = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    row = make_row(admin_user, request_id="csv", model_requested=dangerous, prompt_tokens=7)
    response = client.post("/admin/audit/auditlog/", {"action": "export_csv", "_selected_action": [row.pk]})

    header, values = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    cells = dict(zip(header, values, strict=True))
    assert cells["model_requested"] == "'" + dangerous
    assert cells["prompt_tokens"] == "7" and cells["model_served"] == "demo"
