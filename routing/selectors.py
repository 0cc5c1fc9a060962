"""Routing reads: the one place a model name becomes a route, and the cache of enabled rules behind it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from catalog.models import Profile
from routing.constants import (
    MODEL_NAME_MAX_LENGTH,
    REGEX_MATCH_TIMEOUT_SECONDS,
    RULES_CACHE_SECONDS,
    RULES_VERSION_KEY,
)
from routing.models import ProviderCredential, RoutingFallback, RoutingRule

logger = logging.getLogger(__name__)


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
        self._refreshing = threading.Lock()
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

    def current(self) -> tuple[list[_CompiledRule] | None, bool]:
        """The rules, and whether they are only past their age (no change was signalled): those may serve
        while a reload runs elsewhere, so no request waits for the database for the sake of the TTL."""
        rules = self._rules
        if rules is None or cache.get(RULES_VERSION_KEY) != self._version:
            return None, False
        return rules, time.monotonic() - self._loaded_at > RULES_CACHE_SECONDS

    def reload_in_background(self) -> None:
        if self._refreshing.acquire(blocking=False):

            def reload() -> None:
                try:
                    self.load()
                except Exception:  # the rules in hand go on serving; the next request tries again
                    logger.warning("could not reload the routing rules", exc_info=True)
                finally:
                    close_old_connections()
                    self._refreshing.release()

            threading.Thread(target=reload, name="routing-rules-reload", daemon=True).start()

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


class ModelNameTooLong(ValueError):
    """A name longer than MODEL_NAME_MAX_LENGTH: refused before any rule is tried."""

    def __init__(self, length: int) -> None:
        super().__init__(f"A model name is at most {MODEL_NAME_MAX_LENGTH} characters; this one has {length}.")


# (rule id, pattern) of the regex rules that have run out of time once: each is logged once, not per request.
_slow_rules: set[tuple[int, str]] = set()


def _rule_matches(rule: RoutingRule, model_name: str) -> bool:
    try:
        return rule.matches(model_name)
    except TimeoutError:
        key = (rule.pk, rule.pattern)
        if key not in _slow_rules:
            _slow_rules.add(key)
            logger.warning(
                "Routing rule %r took over %.0f ms to match the model name %r; it counts as not matching "
                "(logged once per pattern: simplify the pattern, for example drop nested repeats).",
                rule.name, REGEX_MATCH_TIMEOUT_SECONDS * 1000, model_name,
            )  # fmt: skip
        return False


def _route_from(rules: list[_CompiledRule], model_name: str) -> Route:
    for compiled in rules:
        if _rule_matches(compiled.rule, model_name):
            return Route(model=model_name, rule=compiled.rule.name, targets=compiled.targets)
    return Route(model=model_name, rule=None, targets=(Target(profile=model_name),))


def _check_length(model_name: str) -> None:
    if len(model_name) > MODEL_NAME_MAX_LENGTH:
        raise ModelNameTooLong(len(model_name))


def routing_rule_resolve(*, model_name: str) -> Route:
    """The route a model name takes: the first enabled matching rule by priority, else the local profile.

    Raises ModelNameTooLong past MODEL_NAME_MAX_LENGTH characters; a regex rule that runs out of
    time counts as not matching, so the work per call is bounded by the rules, never by the name.
    """
    _check_length(model_name)
    rules = _rule_cache.fresh()
    if rules is None:
        rules = _rule_cache.load()
    return _route_from(rules, model_name)


async def routing_rule_aresolve(*, model_name: str) -> Route:
    """routing_rule_resolve for the event loop: only a cache reload leaves it (for the database)."""
    _check_length(model_name)
    rules, aged = _rule_cache.current()
    if rules is None:
        rules = await sync_to_async(_rule_cache.load)()
    elif aged:
        _rule_cache.reload_in_background()
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
