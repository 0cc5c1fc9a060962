"""Credentials at rest, key rotation, rule validation, the circuit breaker."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from audit.models import AdminAction
from catalog.models import Profile
from mlxhub import crypto
from routing.backends import CircuitBreaker
from routing.models import ProviderCredential, RoutingRule
from routing.services import credential_secret, credential_update
from tests.routing.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def stored_secret_column(credential: ProviderCredential) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT encrypted_secret FROM routing_providercredential WHERE id = %s", [credential.pk])
        return str(cursor.fetchone()[0])


def test_the_encrypted_column_holds_no_plaintext(credential: ProviderCredential) -> None:
    stored = stored_secret_column(credential)
    assert SECRET not in stored
    assert SECRET[4:20] not in stored
    assert credential_secret(credential) == SECRET
    assert credential.secret_mask.endswith("WXYZ")


def test_creating_a_credential_writes_an_admin_action_without_the_secret(credential: ProviderCredential) -> None:
    action = AdminAction.objects.get(action="created", object_type="routing.ProviderCredential")
    assert SECRET not in str(action.changes)
    assert SECRET not in action.object_repr


def test_rotation_re_encrypts_under_the_newest_key_and_old_tokens_decrypt_before_it(
    credential: ProviderCredential, settings: Any, own_encryption_keys: list[str]
) -> None:
    old_key = own_encryption_keys[0]
    before = stored_secret_column(credential)
    settings.MLXHUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    credential.refresh_from_db()
    assert credential_secret(credential) == SECRET  # old ciphertext still decrypts under the key list

    out = StringIO()
    call_command("rotate_encryption", stdout=out)
    assert "Re-encrypted 1" in out.getvalue()
    after = stored_secret_column(credential)
    assert after != before

    settings.MLXHUB_ENCRYPTION_KEYS = settings.MLXHUB_ENCRYPTION_KEYS[:1]  # the old key retired
    credential.refresh_from_db()
    assert credential_secret(credential) == SECRET
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(before)  # the pre-rotation token needed the retired key


def test_rotation_without_the_old_key_changes_nothing_and_says_so(
    credential: ProviderCredential, settings: Any
) -> None:
    before = stored_secret_column(credential)
    settings.MLXHUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        call_command("rotate_encryption", stdout=StringIO())
    assert stored_secret_column(credential) == before


def test_an_update_without_a_secret_keeps_the_stored_one(credential: ProviderCredential) -> None:
    before = stored_secret_column(credential)
    credential_update(credential=credential, base_url="https://proxy.example.com")
    assert stored_secret_column(credential) == before


def test_a_rule_needs_exactly_one_target_and_a_valid_regex(profile: Profile, credential: ProviderCredential) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        RoutingRule(name="x", pattern="a", target_profile=profile, target_credential=credential).full_clean()
    with pytest.raises(ValidationError):
        RoutingRule(name="x", pattern="a", target_credential=credential).full_clean()
    with pytest.raises(ValidationError):
        RoutingRule(name="x", pattern="(", match="regex", target_profile=profile).full_clean()


def test_the_breaker_opens_after_repeated_failures_and_lets_one_probe_through_after_the_pause() -> None:
    breaker = CircuitBreaker(failures=3, pause=0.05)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.record_failure()
    assert not breaker.allow()  # open again for another pause
    time.sleep(0.06)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()
