"""A credential's secret never follows it to another host or provider: such a change needs the secret again."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from mlxhub import crypto
from routing.models import ProviderCredential
from routing.services import credential_create, credential_update
from tests.routing.conftest import SECRET

NEW_SECRET = "sk-other-host-0123456789-ABCD"


@pytest.fixture
def upstream(db: None) -> ProviderCredential:
    return credential_create(
        name="gpu-box", provider="openai-compatible", base_url="http://gpu-box:8000/v1", secret=SECRET
    )


def api_as(user: AbstractUser) -> APIClient:
    api_client = APIClient()
    api_client.force_authenticate(user)
    return api_client


@pytest.mark.parametrize(
    "change", [{"base_url": "http://attacker.example/v1"}, {"provider": "anthropic", "base_url": ""}]
)
def test_moving_a_credential_without_its_secret_is_refused_and_changes_nothing(alice, upstream, change):
    response = api_as(alice).patch(f"/api/routing/credentials/{upstream.pk}/", change, format="json")

    assert response.status_code == 400
    assert "secret again" in response.json()["errors"]["secret"][0]
    stored = ProviderCredential.objects.get(pk=upstream.pk)
    assert (stored.provider, stored.base_url) == ("openai-compatible", "http://gpu-box:8000/v1")
    assert crypto.decrypt(stored.encrypted_secret) == SECRET


def test_moving_a_credential_with_a_new_secret_is_accepted(alice, upstream):
    change = {"base_url": "http://new-box:8000/v1", "secret": NEW_SECRET}

    response = api_as(alice).patch(f"/api/routing/credentials/{upstream.pk}/", change, format="json")

    assert response.status_code == 200, response.content
    stored = ProviderCredential.objects.get(pk=upstream.pk)
    assert stored.base_url == "http://new-box:8000/v1" and crypto.decrypt(stored.encrypted_secret) == NEW_SECRET


def test_renaming_or_spelling_out_the_same_address_keeps_the_secret(alice, db):
    credential = credential_create(name="oa", provider="openai", secret=SECRET)

    credential_update(credential=credential, name="openai-main")
    credential_update(credential=credential, base_url="https://api.openai.com/v1/")  # the default, written out

    assert crypto.decrypt(ProviderCredential.objects.get(pk=credential.pk).encrypted_secret) == SECRET


def test_the_service_refuses_a_move_without_the_secret(upstream):
    with pytest.raises(ValidationError) as refused:
        credential_update(credential=upstream, base_url="http://elsewhere:8000/v1")

    assert "secret" in refused.value.message_dict


def test_the_admin_change_form_asks_for_the_secret_when_the_base_url_changes(alice, upstream, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    alice.is_staff = alice.is_superuser = True
    alice.save()
    browser = Client()
    browser.force_login(alice)
    url = f"/admin/routing/providercredential/{upstream.pk}/change/"
    data = {"name": "gpu-box", "provider": "openai-compatible", "base_url": "http://attacker.example/v1", "secret": ""}

    response = browser.post(url, data)

    assert response.status_code == 200 and "secret again" in response.content.decode()
    assert ProviderCredential.objects.get(pk=upstream.pk).base_url == "http://gpu-box:8000/v1"
    assert browser.post(url, {**data, "secret": NEW_SECRET}).status_code == 302
