"""The API key admin: the secret is shown once on the add page, revocation is an action."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.forms import MultiWidget
from django.test import Client
from django.utils import timezone

from mlxhub.accounts.models import ApiKey, Role
from mlxhub.accounts.services import api_key_authenticate
from tests.mlxhub.factories import make_user

ADD_URL = "/admin/accounts/apikey/add/"
CHANGELIST_URL = "/admin/accounts/apikey/"
SECRET_ON_PAGE = re.compile(r'<code id="api-key-secret"[^>]*>(mlxh-[A-Za-z0-9_-]+)</code>')


@pytest.fixture(autouse=True)
def static_files_without_a_manifest(settings):
    # The manifest storage needs `collectstatic` first, which the in-process suite does not run;
    # tests/mlxhub/test_bootstrap.py checks that a bootstrapped hub renders the admin with the real storage.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def alice_admin(team):
    """alice, a superuser and the team's admin."""
    return make_user("alice", team=team, role=Role.ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def admin_browser(alice_admin) -> Client:
    browser = Client()
    browser.force_login(alice_admin)
    return browser


def add_key(browser: Client, **fields: str):
    """Submit the add form as a browser would: every field at its initial value, except ``fields``."""
    form = browser.get(ADD_URL).context["adminform"].form
    data: dict[str, object] = {}
    for name, field in form.fields.items():
        if isinstance(field.widget, MultiWidget):
            data.update({f"{name}_{index}": "" for index in range(len(field.widget.widgets))})
        else:
            value = form[name].value()
            data[name] = "" if value is None else value
    data.update(fields)
    return browser.post(ADD_URL, data)


def test_the_add_page_offers_the_key_fields(admin_browser):
    response = admin_browser.get(ADD_URL)

    assert response.status_code == 200
    content = response.content.decode()
    for field in ("name", "owner", "team", "allowed_models", "expires_at_0"):
        assert f'name="{field}"' in content
    assert 'name="hashed_key"' not in content


def test_adding_a_key_shows_its_secret_once_and_stores_only_the_hash(admin_browser, alice_admin, bob, team):
    response = add_key(admin_browser, name="bob-ci", owner=str(bob.pk), team=str(team.pk), allowed_models="demo, tiny")

    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    match = SECRET_ON_PAGE.search(response.content.decode())
    assert match, response.content.decode()[:3000]
    secret = match.group(1)
    api_key = ApiKey.objects.get()
    assert api_key.name == "bob-ci"
    assert api_key.owner == bob
    assert api_key.team == team
    assert api_key.allowed_models == ["demo", "tiny"]
    assert api_key.hashed_key == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in ApiKey.objects.values().get().values())
    assert api_key_authenticate(secret=secret) == api_key

    change_page = admin_browser.get(f"{CHANGELIST_URL}{api_key.pk}/change/").content.decode()
    changelist = admin_browser.get(CHANGELIST_URL).content.decode()
    assert secret not in change_page
    assert api_key.hashed_key not in change_page
    assert api_key.prefix in changelist
    assert secret not in changelist
    assert all(secret not in f"{entry.object_repr} {entry.change_message}" for entry in LogEntry.objects.all())


def test_the_add_form_defaults_the_owner_to_the_admin(admin_browser, alice_admin):
    response = admin_browser.get(ADD_URL)

    assert re.search(rf'<option value="{alice_admin.pk}" selected>', response.content.decode())


def test_an_invalid_add_form_creates_nothing(admin_browser):
    response = add_key(admin_browser, name="")

    assert response.status_code == 200
    assert not SECRET_ON_PAGE.search(response.content.decode())
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_revoke_action_revokes_the_selected_keys(admin_browser, alice_admin, make_api_key):
    chosen = [make_api_key(alice_admin, name=f"chosen-{number}").api_key for number in range(2)]
    spared = make_api_key(alice_admin, name="spared").api_key

    response = admin_browser.post(
        CHANGELIST_URL,
        {"action": "revoke_keys", "_selected_action": [str(api_key.pk) for api_key in chosen], "index": "0"},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 2 API key(s)." in response.content.decode()
    assert all(ApiKey.objects.get(pk=api_key.pk).revoked_at is not None for api_key in chosen)
    assert ApiKey.objects.get(pk=spared.pk).revoked_at is None


def test_the_revoke_action_leaves_an_earlier_revocation_alone(admin_browser, alice_admin, make_api_key):
    earlier = timezone.now() - timezone.timedelta(days=3)
    api_key = make_api_key(alice_admin).api_key
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=earlier)

    response = admin_browser.post(
        CHANGELIST_URL, {"action": "revoke_keys", "_selected_action": [str(api_key.pk)], "index": "0"}, follow=True
    )

    assert "Revoked 0 API key(s)." in response.content.decode()
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == earlier


def test_the_changelist_shows_each_keys_status(admin_browser, alice_admin, make_api_key):
    from mlxhub.accounts.services import api_key_revoke

    make_api_key(alice_admin, name="live-one")
    api_key_revoke(api_key=make_api_key(alice_admin, name="revoked-one").api_key)
    make_api_key(alice_admin, name="expired-one", expires_at=timezone.now() - timezone.timedelta(hours=1))

    content = admin_browser.get(CHANGELIST_URL).content.decode()

    for status in ("active", "revoked", "expired"):
        assert f'<td class="field-status">{status}</td>' in content


def test_the_changelist_query_count_does_not_grow_with_the_keys(
    admin_browser, team, make_api_key, django_assert_max_num_queries
):
    for number in range(20):
        make_api_key(make_user(f"owner-{number}", team=team, role=Role.MEMBER), name=f"key-{number}", team=team)

    with django_assert_max_num_queries(8):  # 6 today; one query per row would make it 26
        response = admin_browser.get(CHANGELIST_URL)

    assert response.status_code == 200
    assert response.content.decode().count('class="action-select"') == 20


def test_a_non_staff_user_cannot_reach_the_key_admin(bob):
    browser = Client()
    browser.force_login(bob)

    response = browser.get(CHANGELIST_URL)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
