"""Routing writes (credentials, rotation) and the one place a model name becomes a route."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import Profile
from mlxhub import crypto
from routing.constants import ANTHROPIC_VERSION, RULES_CACHE_SECONDS, RULES_VERSION_KEY, UPSTREAM_CONNECT_TIMEOUT
from routing.models import ProviderCredential, RoutingFallback, RoutingRule


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


@transaction.atomic
def credential_update(
    *, credential: ProviderCredential, actor: User | None = None, secret: str | None = None, **fields: Any
) -> ProviderCredential:
    for name, value in fields.items():
        setattr(credential, name, value)
    credential.full_clean(exclude=["encrypted_secret", "secret_last_four"])
    if secret:
        _set_secret(credential, secret)
    credential.save()
    changes = {**{name: str(value) for name, value in fields.items()}, **({"secret": "changed"} if secret else {})}
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=credential, changes=changes)
    return credential


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


# Resolution.
@dataclass(frozen=True)
class CredentialTarget:
    id: int
    name: str
    provider: str
    base_url: str
    encrypted_secret: str = field(repr=False)

    @property
    def speaks_anthropic(self) -> bool:
        return self.provider == ProviderCredential.Provider.ANTHROPIC


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: a local profile by name, or a provider credential and its model name."""

    profile: str = ""
    credential: CredentialTarget | None = None
    model: str = ""

    @property
    def is_local(self) -> bool:
        return self.credential is None

    @property
    def backend(self) -> str:
        return "local" if self.credential is None else self.credential.name

    def describe(self) -> dict[str, Any]:
        if self.credential is None:
            return {"backend": "local", "profile": self.profile}
        return {
            "backend": self.credential.name,
            "provider": self.credential.provider,
            "model": self.model,
        }


@dataclass(frozen=True)
class Route:
    model: str
    rule: str | None
    targets: tuple[Target, ...]

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "rule": self.rule, "targets": [target.describe() for target in self.targets]}


@dataclass(frozen=True)
class _CompiledRule:
    rule: RoutingRule
    targets: tuple[Target, ...]


class _RuleCache:
    """Enabled rules with their targets, loaded once and dropped on change (signals, shared version, TTL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_CompiledRule] | None = None
        self._loaded_at = 0.0
        self._version: str | None = None

    def fresh(self) -> list[_CompiledRule] | None:
        rules = self._rules
        if rules is None or time.monotonic() - self._loaded_at > RULES_CACHE_SECONDS:
            return None
        if cache.get(RULES_VERSION_KEY) != self._version:
            return None
        return rules

    def load(self) -> list[_CompiledRule]:
        with self._lock:
            version = cache.get(RULES_VERSION_KEY)
            if version is None:
                version = uuid.uuid4().hex
                cache.set(RULES_VERSION_KEY, version, None)
            rules = [
                _CompiledRule(rule, _targets(rule))
                for rule in RoutingRule.objects.filter(enabled=True)
                .select_related("target_profile", "target_credential")
                .prefetch_related("fallbacks__target_profile", "fallbacks__target_credential")
            ]
            self._rules, self._loaded_at, self._version = rules, time.monotonic(), version
            return rules

    def invalidate(self) -> None:
        self._rules = None
        cache.set(RULES_VERSION_KEY, uuid.uuid4().hex, None)


_rule_cache = _RuleCache()


def _target(profile: Profile | None, credential: ProviderCredential | None, model: str) -> Target:
    if credential is None:
        return Target(profile=profile.name if profile else "")
    snapshot = CredentialTarget(
        id=credential.pk,
        name=credential.name,
        provider=credential.provider,
        base_url=credential.effective_base_url,
        encrypted_secret=credential.encrypted_secret,
    )
    return Target(credential=snapshot, model=model)


def _targets(rule: RoutingRule) -> tuple[Target, ...]:
    primary = _target(rule.target_profile, rule.target_credential, rule.target_model)
    fallbacks = [
        _target(fallback.target_profile, fallback.target_credential, fallback.target_model)
        for fallback in rule.fallbacks.all()
    ]
    return (primary, *fallbacks)


def _route_from(rules: list[_CompiledRule], model_name: str) -> Route:
    for compiled in rules:
        if compiled.rule.matches(model_name):
            return Route(model=model_name, rule=compiled.rule.name, targets=compiled.targets)
    return Route(model=model_name, rule=None, targets=(Target(profile=model_name),))


def routing_rule_resolve(*, model_name: str) -> Route:
    """The route a model name takes: the first enabled matching rule by priority, else the local profile."""
    rules = _rule_cache.fresh()
    if rules is None:
        rules = _rule_cache.load()
    return _route_from(rules, model_name)


async def routing_rule_aresolve(*, model_name: str) -> Route:
    rules = _rule_cache.fresh()
    if rules is None:
        rules = await sync_to_async(_rule_cache.load)()
    return _route_from(rules, model_name)


@receiver(post_save, sender=RoutingRule)
@receiver(post_delete, sender=RoutingRule)
@receiver(post_save, sender=RoutingFallback)
@receiver(post_delete, sender=RoutingFallback)
@receiver(post_save, sender=ProviderCredential)
@receiver(post_delete, sender=ProviderCredential)
@receiver(post_save, sender=Profile)
@receiver(post_delete, sender=Profile)
def _rules_changed(**kwargs: Any) -> None:
    transaction.on_commit(_rule_cache.invalidate)


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
