"""First-start bootstrap: database, admin user, API key, demo model."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction

from catalog.constants import DEMO_PROFILE_NAME, DEMO_REPO_ID
from catalog.demo_model import build_model
from catalog.services import local_model_register, profile_upsert
from mlxhub.accounts.models import ApiKey, KeyScope, Membership, Role, Team
from mlxhub.accounts.services import api_key_create, hash_secret

ADMIN_USERNAME = "admin"
DEFAULT_TEAM = "Default"
DEMO_DEFAULT_MAX_TOKENS = 256


@dataclass
class BootstrapResult:
    """What was made on this run; secrets are only set when freshly generated."""

    created: list[str] = field(default_factory=list)
    admin_password: str | None = None
    api_key: str | None = None


def _ensure_admin(result: BootstrapResult) -> User:
    admin = User.objects.filter(is_superuser=True).order_by("pk").first()
    if admin is not None:
        return admin
    from_env = settings.MLXHUB_ADMIN_PASSWORD
    password = from_env or secrets.token_urlsafe(16)
    admin = User.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
    result.created.append(f"admin user '{ADMIN_USERNAME}'")
    if not from_env:
        result.admin_password = password
    team, _ = Team.objects.get_or_create(name=DEFAULT_TEAM, defaults={"slug": "default"})
    Membership.objects.get_or_create(team=team, user=admin, defaults={"role": Role.ADMIN})
    return admin


def _ensure_api_key(result: BootstrapResult, admin: User) -> None:
    from_env = settings.MLXHUB_API_KEY
    if from_env:
        if ApiKey.objects.filter(hashed_key=hash_secret(from_env)).exists():
            return
        api_key_create(owner=admin, name="bootstrap (MLXHUB_API_KEY)", secret=from_env, scope=KeyScope.CONTROL)
        result.created.append("API key from MLXHUB_API_KEY")
        return
    if ApiKey.objects.filter(owner=admin, revoked_at__isnull=True).exists():
        return
    # The admin's key: the README's examples use it on both planes (/v1 and /api).
    created = api_key_create(owner=admin, name="bootstrap", scope=KeyScope.CONTROL)
    result.created.append("API key")
    result.api_key = created.secret


def _ensure_demo_model(result: BootstrapResult) -> None:
    folder = Path(settings.MLXHUB_MODELS_DIR) / f"mlxhub-demo-{settings.MLXHUB_DEMO_PRESET}"
    if not (folder / "config.json").is_file():
        build_model(folder, settings.MLXHUB_DEMO_PRESET)
        result.created.append(f"demo model ({settings.MLXHUB_DEMO_PRESET}) in {folder}")
    local_model = local_model_register(path=folder, repo_id=DEMO_REPO_ID)
    if not local_model.profiles.filter(name=DEMO_PROFILE_NAME).exists():
        profile_upsert(
            name=DEMO_PROFILE_NAME,
            local_model=local_model,
            pinned=True,
            default_max_tokens=DEMO_DEFAULT_MAX_TOKENS,
        )
        result.created.append(f"profile '{DEMO_PROFILE_NAME}'")


def bootstrap_run(*, migrate: bool = True) -> BootstrapResult:
    """Idempotent: each step only makes what is missing."""
    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    result = BootstrapResult()
    with transaction.atomic():
        admin = _ensure_admin(result)
        _ensure_api_key(result, admin)
    _ensure_demo_model(result)
    return result
