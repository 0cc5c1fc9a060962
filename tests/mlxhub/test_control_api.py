"""The control API for API keys: who may list, create and revoke, and RFC 7807 errors."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from mlxhub.accounts.models import ApiKey, Role, Team
from mlxhub.accounts.services import api_key_authenticate
from tests.mlxhub.factories import PASSWORD, make_user

KEYS_URL = "/api/keys/"


def detail_url(api_key: ApiKey) -> str:
    return f"{KEYS_URL}{api_key.pk}/"


def logged_in(user) -> APIClient:
    api_client = APIClient()
    assert api_client.login(username=user.username, password=PASSWORD)
    return api_client


def with_key(secret: str) -> APIClient:
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert body["request_id"] == response["x-request-id"]
    return body


def listed_names(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {key["name"] for key in response.json()["results"]}


def test_an_anonymous_request_gets_a_401_problem(db):
    response = APIClient().get(KEYS_URL)

    body = assert_problem(response, 401)
    assert body["title"] == "Unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_api_key_gets_a_401_problem(bob, make_api_key):
    secret = make_api_key(bob).secret

    response = with_key(secret + "x").get(KEYS_URL)

    body = assert_problem(response, 401)
    assert body["detail"] == "Incorrect API key provided."


def test_a_session_user_can_list_keys(bob, make_api_key):
    make_api_key(bob, name="bob-laptop")

    assert listed_names(logged_in(bob).get(KEYS_URL)) == {"bob-laptop"}


def test_a_control_key_user_can_list_keys(bob, make_api_key):
    secret = make_api_key(bob, name="bob-ci", scope="control").secret

    assert listed_names(with_key(secret).get(KEYS_URL)) == {"bob-ci"}


def test_a_control_key_user_can_create_without_a_csrf_token(bob, make_api_key):
    secret = make_api_key(bob, scope="control").secret
    api_client = APIClient(enforce_csrf_checks=True)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    response = api_client.post(KEYS_URL, {"name": "from-ci"}, format="json")

    assert response.status_code == 201, response.content


def test_a_session_post_without_a_csrf_token_is_refused(bob):
    api_client = APIClient(enforce_csrf_checks=True)
    api_client.login(username="bob", password=PASSWORD)

    response = api_client.post(KEYS_URL, {"name": "forged"}, format="json")

    body = assert_problem(response, 403)
    assert "CSRF" in body["detail"]
    assert not ApiKey.objects.filter(name="forged").exists()


def test_a_user_in_no_team_is_refused(db):
    dave = make_user("dave")

    body = assert_problem(logged_in(dave).get(KEYS_URL), 403)

    assert body["detail"] == "You are not a member of any team."


def test_a_viewer_can_list_but_not_create(charlie, make_api_key):
    make_api_key(charlie, name="charlie-readonly")
    api_client = logged_in(charlie)

    assert listed_names(api_client.get(KEYS_URL)) == {"charlie-readonly"}
    body = assert_problem(api_client.post(KEYS_URL, {"name": "nope"}, format="json"), 403)
    assert body["title"] == "Forbidden"
    assert body["detail"] == "Your role does not allow this."
    assert not ApiKey.objects.filter(name="nope").exists()


def test_a_member_creates_a_key_and_sees_its_secret_once(bob):
    api_client = logged_in(bob)

    response = api_client.post(KEYS_URL, {"name": "bob-laptop", "allowed_models": ["demo"]}, format="json")

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("mlxh-")
    assert created["owner"] == "bob"
    assert created["allowed_models"] == ["demo"]
    assert created["prefix"] == created["secret"][:12]
    api_key = api_key_authenticate(secret=created["secret"])
    assert api_key.pk == created["id"]
    assert api_key.owner == bob

    detail = api_client.get(f"{KEYS_URL}{created['id']}/")
    listing = api_client.get(KEYS_URL)

    assert detail.status_code == 200
    assert "secret" not in detail.json()
    assert created["secret"] not in detail.content.decode()
    assert created["secret"] not in listing.content.decode()


def test_a_member_can_put_a_key_in_their_own_team(bob, team: Team):
    response = logged_in(bob).post(KEYS_URL, {"name": "team-key", "team": team.slug}, format="json")

    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(name="team-key").team == team


def test_a_member_cannot_put_a_key_in_another_team(bob):
    Team.objects.create(name="Other", slug="other")

    response = logged_in(bob).post(KEYS_URL, {"name": "sneaky", "team": "other"}, format="json")

    body = assert_problem(response, 400)
    assert "team" in body["errors"]
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_a_missing_name_is_a_400_problem_that_names_the_field(bob):
    response = logged_in(bob).post(KEYS_URL, {"allowed_models": "not-a-list"}, format="json")

    body = assert_problem(response, 400)
    assert body["title"] == "Invalid request"
    assert set(body["errors"]) == {"name", "allowed_models"}
    assert not ApiKey.objects.exists()


def test_a_member_cannot_see_or_revoke_alices_key(alice, bob, make_api_key):
    alices_key = make_api_key(alice, name="alice-prod").api_key
    api_client = logged_in(bob)

    assert "alice-prod" not in listed_names(api_client.get(KEYS_URL))
    assert assert_problem(api_client.get(detail_url(alices_key)), 404)["detail"] == "Not found."
    assert_problem(api_client.post(f"{detail_url(alices_key)}revoke/"), 404)
    assert_problem(api_client.delete(detail_url(alices_key)), 404)

    alices_key.refresh_from_db()
    assert alices_key.revoked_at is None


def test_a_team_admin_sees_every_key(alice, bob, charlie, make_api_key):
    for user in (alice, bob, charlie):
        make_api_key(user, name=f"{user.username}-key")

    response = logged_in(alice).get(KEYS_URL)

    assert listed_names(response) == {"alice-key", "bob-key", "charlie-key"}
    assert response.json()["count"] == 3


def test_a_team_admin_can_revoke_a_members_key(alice, bob, make_api_key):
    bobs_key = make_api_key(bob).api_key

    response = logged_in(alice).post(f"{detail_url(bobs_key)}revoke/")

    assert response.status_code == 200, response.content
    assert response.json()["revoked"] is True


def test_a_revoked_key_is_refused_on_v1(bob, make_api_key, client: Client):
    created = make_api_key(bob)
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {created.secret}"}).status_code == 200

    response = logged_in(bob).post(f"{detail_url(created.api_key)}revoke/")

    assert response.status_code == 200, response.content
    assert response.json()["revoked"] is True
    assert response.json()["revoked_at"] is not None
    refused = client.get("/v1/models", headers={"Authorization": f"Bearer {created.secret}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "revoked_api_key"


def test_a_revoked_key_can_no_longer_call_the_control_api(bob, make_api_key):
    created = make_api_key(bob, scope="control")
    api_client = with_key(created.secret)

    assert api_client.post(f"{detail_url(created.api_key)}revoke/").status_code == 200

    body = assert_problem(api_client.get(KEYS_URL), 401)
    assert body["detail"] == "This API key has been revoked."


def test_delete_revokes_and_keeps_the_row(bob, make_api_key):
    api_key = make_api_key(bob).api_key

    response = logged_in(bob).delete(detail_url(api_key))

    assert response.status_code == 204
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_an_unsupported_method_is_a_405_problem(bob, make_api_key):
    api_key = make_api_key(bob).api_key

    body = assert_problem(logged_in(bob).put(detail_url(api_key), {"name": "renamed"}, format="json"), 405)

    assert body["title"] == "Method Not Allowed"


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER])
def test_the_key_list_query_count_does_not_grow_with_the_keys(team, make_api_key, role, django_assert_max_num_queries):
    user = make_user(f"lister-{role}", team=team, role=role)
    for number in range(20):
        owner = make_user(f"owner-{number}", team=team, role=Role.MEMBER) if role == Role.ADMIN else user
        make_api_key(owner, name=f"key-{number}", team=team)
    api_client = logged_in(user)

    with django_assert_max_num_queries(8):  # 6 today; one query per row would make it 26
        response = api_client.get(KEYS_URL)

    assert response.json()["count"] == 20
