"""Writes for accounts: API keys are created and revoked only here."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from audit.models import AdminAction
from audit.services import admin_action_record
from mlxhub.accounts.constants import (
    API_KEY_DISPLAY_CHARS,
    API_KEY_LAST_USED_GRANULARITY,
    API_KEY_PREFIX,
    API_KEY_RANDOM_BYTES,
)
from mlxhub.accounts.models import ApiKey, KeyScope, Membership, Role, Team

logger = logging.getLogger(__name__)


class ApiKeyError(Exception):
    """Why a presented key was refused; the message is safe to show the caller."""

    def __init__(self, message: str, *, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.code = code


class AccountError(Exception):
    """A refused change to a user, a membership or a key; the message is safe to show the person who asked."""


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str  # shown exactly once, never stored


def hash_secret(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough; no salt is needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_secret() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


@transaction.atomic
def api_key_create(
    *,
    owner: User,
    name: str,
    team: Team | None = None,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    secret: str | None = None,
    limits: dict[str, Any] | None = None,
    scope: str = KeyScope.INFERENCE,
    actor: User | None = None,
) -> CreatedApiKey:
    """Create a key. ``secret`` lets bootstrap honour MLXHUB_API_KEY."""
    if actor is not None and owner.is_superuser and not actor.is_superuser:
        # The key would act as the superuser: a staff user must not gain that by making one.
        raise AccountError("Only a superuser makes keys owned by a superuser.")
    if scope not in KeyScope.values:
        raise AccountError(f"{scope!r} is not a key scope: choose inference or control.")
    secret = secret or generate_secret()
    if not secret.startswith(API_KEY_PREFIX) or len(secret) < API_KEY_DISPLAY_CHARS + 8:
        raise ApiKeyError(
            f"An API key must start with {API_KEY_PREFIX!r} and be at least 20 characters long.",
            code="invalid_api_key_format",
        )
    api_key = ApiKey.objects.create(
        owner=owner,
        name=name,
        team=team,
        allowed_models=list(allowed_models or []),
        expires_at=expires_at,
        scope=scope,
        prefix=secret[:API_KEY_DISPLAY_CHARS],
        hashed_key=hash_secret(secret),
        **_limit_values(limits),
    )
    admin_action_record(
        actor=actor or owner,
        action=AdminAction.Action.CREATED,
        obj=api_key,
        changes={
            "name": name,
            "owner": owner.username,
            "team": str(team or ""),
            "scope": scope,
            **_limit_values(limits),
        },
    )
    return CreatedApiKey(api_key=api_key, secret=secret)


LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent", "token_budget", "budget_period")
# What restricts a key: once it exists, only an admin changes these (a member's key cannot lift its own limits).
ADMIN_ONLY_KEY_FIELDS = ("allowed_models", "expires_at", "team", "scope", *LIMIT_FIELDS)


def _limit_values(limits: dict[str, Any] | None) -> dict[str, Any]:
    return {name: value for name, value in (limits or {}).items() if name in LIMIT_FIELDS}


@transaction.atomic
def api_key_update(*, api_key: ApiKey, actor: User | None, **fields: Any) -> ApiKey:
    """Change a key's name, allow-list, expiry, scope or limits; the change is audited (the secret never changes).
    Who may change what is the interface's check: a member renames, an admin changes the rest."""
    allowed = {"name", *ADMIN_ONLY_KEY_FIELDS}
    changes = {name: value for name, value in fields.items() if name in allowed and getattr(api_key, name) != value}
    for name, value in changes.items():
        setattr(api_key, name, value)
    if changes:
        api_key.save(update_fields=list(changes))
        admin_action_record(
            actor=actor,
            action=AdminAction.Action.CHANGED,
            obj=api_key,
            changes={name: str(value) if name == "team" else value for name, value in changes.items()},
        )
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: User | None = None) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        admin_action_record(actor=actor, action=AdminAction.Action.REVOKED, obj=api_key)
    return api_key


@transaction.atomic
def team_create(*, name: str, slug: str, actor: User | None, limits: dict[str, Any] | None = None) -> Team:
    team = Team.objects.create(name=name, slug=slug, **_limit_values(limits))
    admin_action_record(
        actor=actor, action=AdminAction.Action.CREATED, obj=team, changes={"name": name, **_limit_values(limits)}
    )
    return team


@transaction.atomic
def team_update(*, team: Team, actor: User | None, **fields: Any) -> Team:
    allowed = {"name", "slug", *LIMIT_FIELDS}
    changes = {name: value for name, value in fields.items() if name in allowed and getattr(team, name) != value}
    for name, value in changes.items():
        setattr(team, name, value)
    if changes:
        team.save(update_fields=list(changes))
        admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=team, changes=changes)
    return team


@transaction.atomic
def membership_set(*, team: Team, user: User, role: str, actor: User | None) -> Membership:
    membership, created = Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    admin_action_record(
        actor=actor,
        action=AdminAction.Action.CREATED if created else AdminAction.Action.CHANGED,
        obj=membership,
        changes={"team": team.name, "user": user.username, "role": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User | None) -> None:
    admin_action_record(
        actor=actor,
        action=AdminAction.Action.DELETED,
        obj=membership,
        changes={"team": membership.team.name, "user": membership.user.username},
    )
    membership.delete()


def _check_secret(secret: str, candidates: list[ApiKey]) -> ApiKey:
    """Pick the key whose hash matches, comparing in constant time; prefixes may repeat."""
    presented = hash_secret(secret)
    matched = None
    # Compare even when no row matched, so the timing does not tell whether a prefix exists.
    rows: list[ApiKey | None] = [*candidates] or [None]
    for candidate in rows:
        expected = candidate.hashed_key if candidate is not None else "0" * 64
        if hmac.compare_digest(expected, presented) and candidate is not None:
            matched = candidate
    if matched is None:
        raise ApiKeyError("Incorrect API key provided.")
    if not matched.owner.is_active:
        raise ApiKeyError("The owner of this API key is deactivated.", code="inactive_owner")
    if matched.is_revoked:
        raise ApiKeyError("This API key has been revoked.", code="revoked_api_key")
    if matched.is_expired():
        raise ApiKeyError("This API key has expired.", code="expired_api_key")
    if matched.team_id is not None and not matched.owner.is_superuser and not getattr(matched, "owner_in_team", True):
        raise ApiKeyError("The owner of this API key is no longer a member of its team.", code="not_a_team_member")
    return matched


def _needs_last_used_update(api_key: ApiKey, now: datetime) -> bool:
    return api_key.last_used_at is None or now - api_key.last_used_at > timedelta(seconds=API_KEY_LAST_USED_GRANULARITY)


def _candidates(secret: str) -> QuerySet[ApiKey]:
    if not secret:
        raise ApiKeyError("You didn't provide an API key.", code="missing_api_key")
    # Whether the owner still belongs to the key's team, in the same query: leaving a team ends its keys.
    in_team = Membership.objects.filter(team=OuterRef("team"), user=OuterRef("owner"))
    return (
        ApiKey.objects.select_related("owner", "team")
        .annotate(owner_in_team=Exists(in_team))
        .filter(prefix=secret[:API_KEY_DISPLAY_CHARS])
    )


def _touch(api_key: ApiKey) -> QuerySet[ApiKey] | None:
    """The update that records use, when one is due (at most once a minute per key)."""
    now = timezone.now()
    if not _needs_last_used_update(api_key, now):
        return None
    api_key.last_used_at = now
    return ApiKey.objects.filter(pk=api_key.pk)


def api_key_authenticate(*, secret: str) -> ApiKey:
    """Return the usable key for ``secret`` or raise ApiKeyError."""
    api_key = _check_secret(secret, list(_candidates(secret)))
    if (rows := _touch(api_key)) is not None:
        rows.update(last_used_at=api_key.last_used_at)
    return api_key


async def api_key_aauthenticate(*, secret: str) -> ApiKey:
    """The async twin of api_key_authenticate, for the /v1 data plane: a key seen recently is answered from
    memory (``keycache``), and recording its use never holds the request up."""
    from mlxhub.accounts.keycache import key_cache
    from mlxhub.accounts.limits import usage_prepare

    hashed = hash_secret(secret) if secret else ""
    api_key = key_cache.get(hashed) if hashed else None
    if api_key is None or api_key.is_expired():
        api_key = _check_secret(secret, [row async for row in _candidates(secret)])
        key_cache.put(hashed, api_key)
    if (rows := _touch(api_key)) is not None:
        _record_use_later(rows, api_key.last_used_at)
    # The last await before the (synchronous) reservation: read the budget's usage from the database now,
    # the first time this process needs it in a period, so the reservation never waits on the database.
    await usage_prepare(api_key=api_key, team=api_key.team)
    return api_key


_touches: set[asyncio.Task[Any]] = set()


def _record_use_later(rows: QuerySet[ApiKey], when: datetime | None) -> None:
    async def record() -> None:
        try:
            await rows.aupdate(last_used_at=when)
        except Exception:  # a busy database must not fail a request that was already answered
            logger.warning("could not record a key's last use", exc_info=True)

    task = asyncio.get_running_loop().create_task(record())
    _touches.add(task)  # held until done: the loop keeps only weak references to tasks
    task.add_done_callback(_touches.discard)


def secret_from_headers(headers: Mapping[str, str]) -> str:
    """The key from `Authorization: Bearer …`, or from `x-api-key` (Anthropic clients)."""
    get = headers.get
    authorization = get("authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return str(value.strip())
    return str(get("x-api-key") or "").strip()


@transaction.atomic
def user_save(*, user: User, actor: User | None, changed: list[str]) -> User:
    """Save a user edited in the admin; the audit row names the fields, never a password."""
    created = user.pk is None
    user.save()
    changes = {name: "(changed)" if name.startswith("password") else str(getattr(user, name, "")) for name in changed}
    admin_action_record(
        actor=actor,
        action=AdminAction.Action.CREATED if created else AdminAction.Action.CHANGED,
        obj=user,
        changes=changes,
    )
    return user


@transaction.atomic
def user_delete(*, user: User, actor: User | None) -> None:
    admin_action_record(actor=actor, action=AdminAction.Action.DELETED, obj=user)
    user.delete()


def user_password_changed(*, user: User, actor: User | None) -> None:
    """Called inside the transaction that saved the new password; records the fact, never the value."""
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=user, changes={"password": "(changed)"})


@dataclass(frozen=True)
class CreatedUser:
    user: User
    password: str | None  # generated here and shown exactly once; None when the caller chose it


@transaction.atomic
def user_create(
    *,
    username: str,
    team: Team,
    role: str,
    password: str | None = None,
    email: str = "",
    superuser: bool = False,
    actor: User | None = None,
) -> CreatedUser:
    """A user who can sign in, with a role in ``team``; a password is generated when none is given."""
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise AccountError(f"A user named {username!r} already exists.")
    user = User(username=username, email=email, is_staff=superuser, is_superuser=superuser)
    try:
        user.full_clean(exclude=["password", "last_login", "date_joined"])
    except ValidationError as exc:
        raise AccountError(" ".join(exc.messages)) from exc
    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise AccountError(" ".join(exc.messages)) from exc
    user.set_password(password)
    user.save()
    admin_action_record(
        actor=actor,
        action=AdminAction.Action.CREATED,
        obj=user,
        changes={"username": username, "superuser": superuser, "password": "(set)"},
    )
    membership_set(team=team, user=user, role=role, actor=actor)
    return CreatedUser(user=user, password=password if generated else None)


@transaction.atomic
def user_set_active(*, user: User, active: bool, actor: User | None) -> User:
    """Deactivate (or reactivate) a user: they cannot sign in, their sessions end and their keys stop working."""
    if actor is not None and user.pk == actor.pk and not active:
        raise AccountError("You cannot deactivate yourself; ask another admin.")
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
        admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=user, changes={"is_active": active})
    return user


@transaction.atomic
def membership_role_change(*, membership: Membership, role: str, actor: User | None) -> Membership:
    """A member's new role in their team; nobody changes their own (an admin could lock the team out)."""
    if role not in Role.values:
        raise AccountError(f"{role!r} is not a role: choose admin, member or viewer.")
    if actor is not None and membership.user_id == actor.pk:
        raise AccountError("You cannot change your own role; ask another admin.")
    if membership.role == role:
        return membership
    return membership_set(team=membership.team, user=membership.user, role=role, actor=actor)
