"""What the schemathesis run (test_live_fuzz.py) found, one regression test each, in-process."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.mlxhub.test_control_api import assert_problem, logged_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/api/keys/abc/", "/api/keys/%F3%93%86%88/", "/api/teams/x1/", "/api/keys/1e3/revoke/"]
)
def test_an_id_that_is_not_a_number_is_a_404_problem(alice, path):
    assert_problem(logged_in(alice).get(path) if "revoke" not in path else logged_in(alice).post(path), 404)


def test_the_schema_lists_the_control_api(alice):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/keys/{id}/", "/api/routing/rules/", "/api/catalog/downloads/"} <= set(paths)
    assert response.json()["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_a_credential_the_model_refuses_is_a_400_problem_that_names_the_field(django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", password="pw-root-12345")
    api_client = APIClient()
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        "/api/routing/credentials/",
        {"name": "local", "provider": "openai-compatible", "secret": "sk-x"},
        format="json",
    )
    body = assert_problem(response, 400)
    assert "base_url" in body["errors"]


def test_a_hub_revision_with_characters_no_revision_has_is_a_400_problem(alice):
    response = logged_in(alice).get("/api/catalog/models/owner/name/", {"revision": "main\r\nX-Evil: 1"})
    body = assert_problem(response, 400)
    assert "revision" in body["errors"]


@pytest.mark.live
def test_count_tokens_for_messages_the_template_cannot_render_is_a_400_in_anthropics_shape(live_hub):
    body = {"model": "demo", "messages": [{"role": "system", "content": ""}]}
    with live_hub.client() as http:
        response = http.post("/v1/messages/count_tokens", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("token", ["hf_caf\u00e9", "hf_a b", "hf_\x07bell"])
def test_a_hub_token_that_cannot_travel_in_a_header_is_refused_and_not_stored(django_user_model, token):
    from catalog.selectors import hub_token_is_set

    admin_user = django_user_model.objects.create_superuser("root", password="pw-root-12345")
    api_client = APIClient()
    api_client.force_authenticate(admin_user)
    body = assert_problem(api_client.put("/api/catalog/token/", {"token": token}, format="json"), 400)
    assert "token" in body["errors"]
    # Stored, it made every later hub call (search, details, downloads) a 500: httpx cannot send it.
    assert not hub_token_is_set()


@pytest.mark.parametrize("path", ["/api/keys/", "/api/teams/", "/api/profiles/", "/api/audit/", "/api/routing/rules/"])
def test_a_page_limit_past_what_the_database_can_hold_is_capped_not_a_500(alice, path):
    from mlxhub.accounts.services import api_key_create

    api_key_create(owner=alice, name="paged", actor=alice)  # an empty list is answered without a query
    response = logged_in(alice).get(path, {"offset": "-41777401", "limit": "13162353096049631232"})
    assert response.status_code == 200, response.content
    assert "results" in response.json()
