"""Credentials at rest, key rotation, rule and credential writes with their admin actions, the breaker."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.db.models import ProtectedError

from audit.models import AdminAction
from catalog.models import Profile
from mlxhub import crypto
from routing.backends import CircuitBreaker
from routing.models import ProviderCredential, RoutingRule
from routing.selectors import routing_rule_resolve
from routing.services import (
    credential_delete,
    credential_secret,
    credential_update,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
)
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
    credential_update(credential=credential, name="renamed")  # a new base URL needs the secret again
    assert stored_secret_column(credential) == before


def test_a_rule_needs_exactly_one_target_and_a_valid_regex(profile: Profile, credential: ProviderCredential) -> None:
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


def rule_actions(action: str) -> list[AdminAction]:
    return list(AdminAction.objects.filter(object_type="routing.RoutingRule", action=action))


def test_creating_a_rule_writes_it_its_fallbacks_and_one_admin_action_with_the_values(
    alice: Any, profile: Profile, credential: ProviderCredential
) -> None:
    rule = routing_rule_create(actor=alice, name="claude", pattern="claude-*", match="glob",
                               target_credential=credential, target_model="claude-sonnet",
                               fallbacks=[{"position": 0, "target_profile": profile}])  # fmt: skip
    assert [(step.target_profile, step.position) for step in rule.fallbacks.all()] == [(profile, 0)]
    [action] = rule_actions("created")
    assert action.actor == alice
    assert action.object_id == str(rule.pk)
    assert action.changes["pattern"] == "claude-*"
    assert action.changes["target_credential"] == "anthropic-main"
    assert action.changes["fallbacks"] == [
        {"position": 0, "target_profile": "tiny", "target_credential": None, "target_model": ""}
    ]
    assert SECRET not in str(action.changes)
    assert routing_rule_resolve(model_name="claude-x").rule == "claude"


def test_updating_a_rule_records_only_the_fields_given_and_replaces_the_fallbacks_when_given(
    alice: Any, profile: Profile, credential: ProviderCredential
) -> None:
    rule = routing_rule_create(actor=alice, name="r", pattern="big", target_profile=profile,
                               fallbacks=[{"target_credential": credential, "target_model": "c1"}])  # fmt: skip
    routing_rule_update(rule=rule, actor=alice, priority=5)
    assert rule_actions("changed")[0].changes == {"priority": 5}
    assert [step.target_model for step in RoutingRule.objects.get().fallbacks.all()] == ["c1"]  # kept

    routing_rule_update(rule=rule, actor=alice, fallbacks=[{"target_credential": credential, "target_model": "c2"}])
    assert [step.target_model for step in RoutingRule.objects.get().fallbacks.all()] == ["c2"]
    assert len(rule_actions("changed")) == 2
    with pytest.raises(TypeError, match="colour"):
        routing_rule_update(rule=rule, actor=alice, colour="blue")


def test_a_rule_whose_fallback_fails_validation_writes_nothing(
    alice: Any, profile: Profile, credential: ProviderCredential
) -> None:
    with pytest.raises(ValidationError, match="provider's model name"):
        routing_rule_create(actor=alice, name="r", pattern="big", target_profile=profile,
                            fallbacks=[{"target_credential": credential}])  # fmt: skip
    assert not RoutingRule.objects.exists()  # the rule row was saved before the fallback failed: rolled back
    assert not rule_actions("created")


def test_an_update_that_fails_validation_leaves_the_rule_its_fallbacks_and_the_log_as_they_were(
    alice: Any, profile: Profile, credential: ProviderCredential
) -> None:
    rule = routing_rule_create(actor=alice, name="r", pattern="big", target_profile=profile,
                               fallbacks=[{"target_credential": credential, "target_model": "c1"}])  # fmt: skip
    with pytest.raises(ValidationError):
        routing_rule_update(rule=rule, actor=alice, pattern="huge", fallbacks=[{"target_profile": None}])
    with pytest.raises(ValidationError, match="regular expression"):
        routing_rule_update(rule=rule, actor=alice, match="regex", pattern="(")
    stored = RoutingRule.objects.get()
    assert (stored.pattern, stored.match) == ("big", "exact")
    assert [step.target_model for step in stored.fallbacks.all()] == ["c1"]
    assert not rule_actions("changed")


def test_deleting_a_rule_or_a_credential_writes_one_admin_action_each(
    alice: Any, profile: Profile, credential: ProviderCredential
) -> None:
    rule = routing_rule_create(actor=alice, name="r", pattern="big", target_profile=profile)
    routing_rule_delete(rule=rule, actor=alice)
    credential_delete(credential=credential, actor=alice)
    assert not RoutingRule.objects.exists()
    assert not ProviderCredential.objects.exists()
    deleted = AdminAction.objects.filter(action="deleted", actor=alice)
    assert sorted((action.object_type, action.object_repr) for action in deleted) == [
        ("routing.ProviderCredential", "anthropic-main"),
        ("routing.RoutingRule", "r"),
    ]


def test_a_credential_a_rule_targets_is_not_deleted_and_nothing_is_recorded(
    alice: Any, credential: ProviderCredential
) -> None:
    routing_rule_create(actor=alice, name="r", pattern="big", target_credential=credential, target_model="c1")
    with pytest.raises(ProtectedError):
        credential_delete(credential=credential, actor=alice)
    assert ProviderCredential.objects.filter(pk=credential.pk).exists()
    assert not AdminAction.objects.filter(action="deleted").exists()
