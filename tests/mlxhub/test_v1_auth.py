"""/v1 authentication, in process: OpenAI-shaped 401s, and the models a valid key may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from django.utils import timezone

from catalog.services import local_model_register, profile_upsert
from mlxhub.accounts.services import api_key_create, api_key_revoke
from tests.mlxhub.factories import TINY_PROFILE, make_user

MODELS_URL = "/v1/models"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_openai_error(response, *, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["x-request-id"]
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_a_request_without_a_key_gets_an_openai_shaped_401(db, client: Client):
    error = assert_openai_error(client.get(MODELS_URL), status=401, code="missing_api_key")

    assert error["type"] == "authentication_error"
    assert error["param"] is None


def _wrong_secret(make_api_key, owner) -> str:
    return make_api_key(owner).secret + "x"


def _revoked_secret(make_api_key, owner) -> str:
    created = make_api_key(owner)
    api_key_revoke(api_key=created.api_key)
    return created.secret


def _expired_secret(make_api_key, owner) -> str:
    return make_api_key(owner, expires_at=timezone.now() - timedelta(seconds=1)).secret


@pytest.mark.parametrize(
    ("secret_for", "code"),
    [(_wrong_secret, "invalid_api_key"), (_revoked_secret, "revoked_api_key"), (_expired_secret, "expired_api_key")],
    ids=["wrong", "revoked", "expired"],
)
def test_a_refused_key_gets_an_openai_shaped_401(alice, make_api_key, client: Client, secret_for, code):
    secret = secret_for(make_api_key, alice)

    response = client.get(MODELS_URL, headers=_bearer(secret))

    error = assert_openai_error(response, status=401, code=code)
    assert error["type"] == "authentication_error"
    assert secret not in response.content.decode()


def test_the_401_carries_the_request_id_the_client_sent(db, client: Client):
    response = client.get(MODELS_URL, headers={"X-Request-Id": "trace-abc.123"})

    assert response.status_code == 401
    assert response["x-request-id"] == "trace-abc.123"


def test_a_valid_key_lists_the_profiles(alice, make_api_key, tiny_profile, client: Client):
    response = client.get(MODELS_URL, headers=_bearer(make_api_key(alice).secret))

    assert response.status_code == 200, response.content
    assert response["x-request-id"]
    body = response.json()
    assert body["object"] == "list"
    card = next(card for card in body["data"] if card["id"] == TINY_PROFILE)
    assert card["object"] == "model"
    assert card["kind"] == "text"
    assert card["context_length"] == 2048


def test_the_x_api_key_header_works_too(alice, make_api_key, tiny_profile, client: Client):
    response = client.get(MODELS_URL, headers={"X-Api-Key": make_api_key(alice).secret})

    assert response.status_code == 200, response.content
    assert TINY_PROFILE in [card["id"] for card in response.json()["data"]]


def test_a_key_limited_to_other_models_does_not_see_this_profile(alice, make_api_key, tiny_profile, client: Client):
    secret = make_api_key(alice, allowed_models=["some-other-model"]).secret

    response = client.get(MODELS_URL, headers=_bearer(secret))

    assert response.status_code == 200
    assert TINY_PROFILE not in [card["id"] for card in response.json()["data"]]


@pytest.mark.django_db(transaction=True)
async def test_the_async_client_is_refused_then_served(tiny_model_dir):
    def rows() -> str:
        profile_upsert(name=TINY_PROFILE, local_model=local_model_register(path=tiny_model_dir))
        return api_key_create(owner=make_user("dora"), name="async").secret

    secret = await sync_to_async(rows)()
    client = AsyncClient()

    refused = await client.get(MODELS_URL, headers=_bearer(secret + "x"))
    served = await client.get(MODELS_URL, headers=_bearer(secret))

    assert_openai_error(refused, status=401, code="invalid_api_key")
    assert served.status_code == 200, served.content
    assert TINY_PROFILE in [card["id"] for card in served.json()["data"]]
