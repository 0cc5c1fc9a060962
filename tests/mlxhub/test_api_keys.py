from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone

from mlxhub.accounts.models import ApiKey
from mlxhub.accounts.services import (
    ApiKeyError,
    api_key_aauthenticate,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    secret_from_headers,
)
from tests.mlxhub.factories import make_user


def _tamper(secret: str) -> str:
    """The same key with its last character changed: same prefix, wrong secret."""
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def test_it_returns_a_secret_that_starts_with_mlxh(alice):
    created = api_key_create(owner=alice, name="laptop")

    assert created.secret.startswith("mlxh-")
    assert len(created.secret) >= 40
    assert created.api_key.prefix == created.secret[:12]


def test_two_keys_get_different_secrets(alice, make_api_key):
    assert make_api_key(alice).secret != make_api_key(alice).secret


def test_the_apikey_rows_never_hold_the_secret_in_clear(alice, bob):
    secrets = [api_key_create(owner=user, name=f"{user.username}'s key").secret for user in (alice, bob)]

    orm_rows = list(ApiKey.objects.values())
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        raw_rows = cursor.fetchall()

    assert len(orm_rows) == len(raw_rows) == 2
    for secret in secrets:
        for row in orm_rows:
            assert all(secret not in str(value) for value in row.values()), row
        for raw_row in raw_rows:
            assert all(secret not in str(value) for value in raw_row), raw_row


def test_no_table_in_the_database_holds_the_secret(alice):
    secret = api_key_create(owner=alice, name="laptop").secret

    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608  (names from introspection)
            for row in cursor.fetchall():
                assert secret not in repr(row), table


def test_the_hashed_key_is_the_sha256_of_the_secret(alice):
    created = api_key_create(owner=alice, name="laptop")

    stored = ApiKey.objects.get(pk=created.api_key.pk).hashed_key
    assert stored == hashlib.sha256(created.secret.encode()).hexdigest()


def test_it_honours_a_chosen_secret(alice):
    secret = "mlxh-chosen-by-the-operator-0123456789"

    created = api_key_create(owner=alice, name="ops", secret=secret)

    assert created.secret == secret
    assert api_key_authenticate(secret=secret) == created.api_key


@pytest.mark.parametrize("secret", ["sk-not-an-mlxhub-key-0123456789", "mlxh-short"])
def test_it_refuses_a_chosen_secret_without_the_prefix_or_too_short(alice, secret):
    with pytest.raises(ApiKeyError) as excinfo:
        api_key_create(owner=alice, name="ops", secret=secret)

    assert excinfo.value.code == "invalid_api_key_format"
    assert not ApiKey.objects.exists()


def test_it_authenticates_a_valid_key(alice, make_api_key):
    created = make_api_key(alice)

    api_key = api_key_authenticate(secret=created.secret)

    assert api_key.pk == created.api_key.pk
    assert api_key.owner == alice


def test_it_rejects_a_wrong_key_with_a_known_prefix(alice, make_api_key):
    created = make_api_key(alice)

    with pytest.raises(ApiKeyError) as excinfo:
        api_key_authenticate(secret=_tamper(created.secret))

    assert excinfo.value.code == "invalid_api_key"


def test_it_rejects_an_unknown_key(alice, make_api_key):
    make_api_key(alice)

    with pytest.raises(ApiKeyError) as excinfo:
        api_key_authenticate(secret="mlxh-" + "x" * 43)

    assert excinfo.value.code == "invalid_api_key"


def test_it_rejects_a_missing_key(db):
    with pytest.raises(ApiKeyError) as excinfo:
        api_key_authenticate(secret="")

    assert excinfo.value.code == "missing_api_key"


def test_it_rejects_a_revoked_key(alice, make_api_key):
    created = make_api_key(alice)
    api_key_revoke(api_key=created.api_key)

    with pytest.raises(ApiKeyError) as excinfo:
        api_key_authenticate(secret=created.secret)

    assert excinfo.value.code == "revoked_api_key"


def test_it_rejects_an_expired_key(alice, make_api_key):
    created = make_api_key(alice, expires_at=timezone.now() - timedelta(minutes=1))

    with pytest.raises(ApiKeyError) as excinfo:
        api_key_authenticate(secret=created.secret)

    assert excinfo.value.code == "expired_api_key"


def test_it_accepts_a_key_that_expires_later(alice, make_api_key):
    created = make_api_key(alice, expires_at=timezone.now() + timedelta(days=1))

    assert api_key_authenticate(secret=created.secret).pk == created.api_key.pk


def test_revoking_twice_keeps_the_first_revocation_time(alice, make_api_key):
    api_key = make_api_key(alice).api_key
    first = api_key_revoke(api_key=api_key).revoked_at

    api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk))

    assert first is not None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first


def test_authenticating_records_last_used_at(alice, make_api_key):
    created = make_api_key(alice)
    assert created.api_key.last_used_at is None
    before = timezone.now()

    api_key_authenticate(secret=created.secret)

    last_used_at = ApiKey.objects.get(pk=created.api_key.pk).last_used_at
    assert last_used_at is not None
    assert before <= last_used_at <= timezone.now()


def test_it_writes_last_used_at_at_most_once_a_minute(alice, make_api_key, django_assert_num_queries):
    created = make_api_key(alice)
    api_key_authenticate(secret=created.secret)
    first = ApiKey.objects.get(pk=created.api_key.pk).last_used_at

    with django_assert_num_queries(1):  # the lookup only, no UPDATE
        api_key_authenticate(secret=created.secret)

    assert ApiKey.objects.get(pk=created.api_key.pk).last_used_at == first


def test_it_refreshes_a_last_used_at_older_than_a_minute(alice, make_api_key):
    created = make_api_key(alice)
    stale = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=created.api_key.pk).update(last_used_at=stale)

    api_key_authenticate(secret=created.secret)

    assert ApiKey.objects.get(pk=created.api_key.pk).last_used_at > stale + timedelta(minutes=4)


@pytest.mark.django_db(transaction=True)
async def test_the_async_twin_authenticates_and_refuses_like_the_sync_one():
    dora = await sync_to_async(make_user)("dora")
    good = await sync_to_async(api_key_create)(owner=dora, name="good")
    revoked = await sync_to_async(api_key_create)(owner=dora, name="revoked")
    await sync_to_async(api_key_revoke)(api_key=revoked.api_key)

    assert (await api_key_aauthenticate(secret=good.secret)).pk == good.api_key.pk
    # The use is recorded beside the request, not before its answer.
    async with asyncio.timeout(5):
        while (await ApiKey.objects.aget(pk=good.api_key.pk)).last_used_at is None:
            await asyncio.sleep(0.02)
    for secret, code in [
        (revoked.secret, "revoked_api_key"),
        (_tamper(good.secret), "invalid_api_key"),
        ("", "missing_api_key"),
    ]:
        with pytest.raises(ApiKeyError) as excinfo:
            await api_key_aauthenticate(secret=secret)
        assert excinfo.value.code == code


@pytest.mark.django_db(transaction=True)
async def test_a_key_answered_from_memory_is_refused_as_soon_as_it_is_revoked_or_its_owner_deactivated():
    erin = await sync_to_async(make_user)("erin")
    first = await sync_to_async(api_key_create)(owner=erin, name="first")
    second = await sync_to_async(api_key_create)(owner=erin, name="second")
    for created in (first, second):  # both now answered from memory
        assert (await api_key_aauthenticate(secret=created.secret)).pk == created.api_key.pk

    await sync_to_async(api_key_revoke)(api_key=first.api_key)
    with pytest.raises(ApiKeyError) as revoked:
        await api_key_aauthenticate(secret=first.secret)
    assert revoked.value.code == "revoked_api_key"

    erin.is_active = False
    await erin.asave(update_fields=["is_active"])
    with pytest.raises(ApiKeyError) as deactivated:
        await api_key_aauthenticate(secret=second.secret)
    assert deactivated.value.code == "inactive_owner"


def _headers(**headers: str):
    return RequestFactory().get("/", headers=headers).headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer mlxh-from-bearer"}, "mlxh-from-bearer"),
        ({"Authorization": "bearer   mlxh-lowercase-scheme  "}, "mlxh-lowercase-scheme"),
        ({"X-Api-Key": "mlxh-from-x-api-key"}, "mlxh-from-x-api-key"),
        ({"Authorization": "Bearer mlxh-bearer-wins", "X-Api-Key": "mlxh-other"}, "mlxh-bearer-wins"),
        ({"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "mlxh-fallback"}, "mlxh-fallback"),
        ({"Authorization": "Bearer "}, ""),
        ({}, ""),
    ],
)
def test_secret_from_headers_reads_bearer_and_x_api_key(headers, expected):
    assert secret_from_headers(_headers(**headers)) == expected
