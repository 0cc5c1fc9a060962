"""Routing writes: provider credentials (and their rotation), routing rules; each with its admin-action row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import httpx
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import Profile
from mlxhub import crypto
from routing.constants import ANTHROPIC_VERSION, UPSTREAM_CONNECT_TIMEOUT
from routing.models import ProviderCredential, RoutingFallback, RoutingRule
from routing.selectors import CredentialTarget


# Credentials.
@transaction.atomic
def credential_create(
    *, name: str, provider: str, secret: str, base_url: str = "", actor: User | None = None
) -> ProviderCredential:
    credential = ProviderCredential(name=name, provider=provider, base_url=base_url)
    credential.full_clean(exclude=["encrypted_secret", "secret_last_four"])
    _set_secret(credential, secret)
    credential.save()
    admin_action_record(actor=actor, action=AdminAction.Action.CREATED, obj=credential, changes={"provider": provider})
    return credential


MOVE_REFUSED_MESSAGE = (
    "Changing the provider or the base URL needs the secret again: the stored one is never sent elsewhere."
)


def credential_needs_secret(*, credential: ProviderCredential, provider: str | None, base_url: str | None) -> bool:
    """Whether these changes send requests somewhere else (another host, another provider's API), so that
    the stored secret may not follow: whoever changes them must enter it again."""
    if credential.pk is None:
        return False
    moved = ProviderCredential(
        provider=credential.provider if provider is None else provider,
        base_url=credential.base_url if base_url is None else base_url,
    )
    return (moved.provider, moved.effective_base_url) != (credential.provider, credential.effective_base_url)


@transaction.atomic
def credential_update(
    *, credential: ProviderCredential, actor: User | None = None, secret: str | None = None, **fields: Any
) -> ProviderCredential:
    """Change a credential; a change of provider or base URL without a new secret is refused (ValidationError)."""
    if not secret and credential_needs_secret(
        credential=credential, provider=fields.get("provider"), base_url=fields.get("base_url")
    ):
        raise ValidationError({"secret": MOVE_REFUSED_MESSAGE})
    for name, value in fields.items():
        setattr(credential, name, value)
    credential.full_clean(exclude=["encrypted_secret", "secret_last_four"])
    if secret:
        _set_secret(credential, secret)
    credential.save()
    changes = {**{name: str(value) for name, value in fields.items()}, **({"secret": "changed"} if secret else {})}
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=credential, changes=changes)
    return credential


@transaction.atomic
def credential_delete(*, credential: ProviderCredential, actor: User | None) -> None:
    """Raises ProtectedError (and writes nothing) while a rule or a fallback targets the credential."""
    admin_action_record(actor=actor, action=AdminAction.Action.DELETED, obj=credential)
    credential.delete()


def _set_secret(credential: ProviderCredential, secret: str) -> None:
    credential.encrypted_secret = crypto.encrypt(secret)
    credential.secret_last_four = secret[-4:] if len(secret) >= 8 else ""


def credential_secret(credential: ProviderCredential | CredentialTarget) -> str:
    """The plaintext, for the Authorization header of an upstream request only."""
    return crypto.decrypt(credential.encrypted_secret)


@transaction.atomic
def credentials_rotate_encryption() -> int:
    """Re-encrypt every stored secret under the newest key; returns how many."""
    count = 0
    for credential in ProviderCredential.objects.select_for_update().only("pk", "encrypted_secret"):
        credential.encrypted_secret = crypto.rotate(credential.encrypted_secret)
        credential.save(update_fields=["encrypted_secret"])
        count += 1
    return count


def credential_test(*, credential: ProviderCredential) -> tuple[bool, str]:
    """List the provider's models with the stored secret: (accepted, a short message that never holds it)."""
    secret = credential_secret(credential)
    if credential.speaks_anthropic:
        url = f"{credential.effective_base_url}/v1/models"
        headers = {"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION}
    else:
        url = f"{credential.effective_base_url}/models"
        headers = {"Authorization": f"Bearer {secret}"}
    try:
        response = httpx.get(url, headers=headers, timeout=UPSTREAM_CONNECT_TIMEOUT * 2)
    except httpx.HTTPError as exc:
        return False, f"{credential.name}: could not connect ({type(exc).__name__})."
    if response.status_code >= 400:
        return False, f"{credential.name}: the provider answered {response.status_code}."
    return True, f"{credential.name}: connected ({response.status_code})."


# Rules.
RULE_FIELDS = frozenset(
    {"name", "pattern", "match", "priority", "enabled", "target_profile", "target_credential", "target_model"}
)


class FallbackSpec(TypedDict, total=False):
    """One fallback step as a form or a serializer hands it over; missing keys take the model's defaults."""

    position: int
    target_profile: Profile | None
    target_credential: ProviderCredential | None
    target_model: str


@transaction.atomic
def routing_rule_create(
    *,
    actor: User | None,
    name: str,
    pattern: str,
    match: str = RoutingRule.Match.EXACT,
    priority: int = 100,
    enabled: bool = True,
    target_profile: Profile | None = None,
    target_credential: ProviderCredential | None = None,
    target_model: str = "",
    fallbacks: Sequence[FallbackSpec] = (),
) -> RoutingRule:
    rule = RoutingRule(
        name=name,
        pattern=pattern,
        match=match,
        priority=priority,
        enabled=enabled,
        target_profile=target_profile,
        target_credential=target_credential,
        target_model=target_model,
    )
    rule.full_clean()
    rule.save()
    steps = _fallbacks_add(rule, fallbacks)
    changes: dict[str, Any] = {field: _plain(getattr(rule, field)) for field in sorted(RULE_FIELDS - {"name"})}
    changes["fallbacks"] = _fallbacks_described(steps)
    admin_action_record(actor=actor, action=AdminAction.Action.CREATED, obj=rule, changes=changes)
    return rule


@transaction.atomic
def routing_rule_update(
    *, rule: RoutingRule, actor: User | None, fallbacks: Sequence[FallbackSpec] | None = None, **fields: Any
) -> RoutingRule:
    """Sets ``fields`` (names from RULE_FIELDS); ``fallbacks``, when given, replace the rule's whole list.

    On a ValidationError nothing is written, but ``rule`` keeps the new values in memory.
    """
    unknown = set(fields) - RULE_FIELDS
    if unknown:
        raise TypeError(f"Not a routing rule field: {', '.join(sorted(unknown))}.")
    for field, value in fields.items():
        setattr(rule, field, value)
    rule.full_clean()
    rule.save()
    changes: dict[str, Any] = {field: _plain(value) for field, value in fields.items()}
    if fallbacks is not None:
        rule.fallbacks.all().delete()
        changes["fallbacks"] = _fallbacks_described(_fallbacks_add(rule, fallbacks))
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=rule, changes=changes)
    return rule


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule, actor: User | None) -> None:
    admin_action_record(actor=actor, action=AdminAction.Action.DELETED, obj=rule)
    rule.delete()  # its fallbacks go with it (CASCADE)


def _fallbacks_add(rule: RoutingRule, fallbacks: Sequence[FallbackSpec]) -> list[RoutingFallback]:
    steps = []
    for fallback in fallbacks:
        step = RoutingFallback(rule=rule, **fallback)
        step.full_clean()  # a bad step raises here, and the caller's transaction drops the rule's write too
        step.save()
        steps.append(step)
    return steps


def _fallbacks_described(steps: list[RoutingFallback]) -> list[dict[str, Any]]:
    fields = ("position", "target_profile", "target_credential", "target_model")
    return [{field: _plain(getattr(step, field)) for field in fields} for step in steps]


def _plain(value: object) -> object:
    """A JSON value for the admin-action row: a related row by its name (never a credential's secret)."""
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
