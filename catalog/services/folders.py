"""Model folders on disk and the profiles that serve them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.constants import REQUIRED_MODEL_FILES, WEIGHT_SUFFIXES
from catalog.model_facts import facts_from_config
from catalog.models import LocalModel, Profile


class ModelFolderError(Exception):
    """The folder is not a model in the Hugging Face layout."""


def _folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def inspect_model_folder(path: Path) -> dict[str, Any]:
    """Read what a model folder says about itself; raise ModelFolderError if it is not one."""
    if not path.is_dir():
        raise ModelFolderError(f"{path} is not a folder.")
    missing = [name for name in REQUIRED_MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelFolderError(f"{path} has no {', '.join(missing)}.")
    if not any(item.suffix in WEIGHT_SUFFIXES for item in path.iterdir()):
        raise ModelFolderError(f"{path} has no .safetensors weights.")
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError as exc:
        raise ModelFolderError(f"{path}/config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path}/config.json is not a JSON object.")
    return {**facts_from_config(config, repo_id=path.name), "size_bytes": _folder_size(path)}


@transaction.atomic
def local_model_register(*, path: Path, repo_id: str | None = None, revision: str = "main") -> LocalModel:
    """Register (or refresh) a model folder; idempotent per path."""
    path = path.expanduser().resolve()
    facts = inspect_model_folder(path)
    local_model, _ = LocalModel.objects.update_or_create(
        path=str(path),
        defaults={"repo_id": repo_id or f"local/{path.name}", "revision": revision, **facts},
    )
    return local_model


@transaction.atomic
def profile_upsert(
    *,
    name: str,
    local_model: LocalModel,
    pinned: bool = False,
    default_max_tokens: int | None = None,
    system_prompt: str = "",
) -> Profile:
    profile, _ = Profile.objects.update_or_create(
        name=name,
        defaults={
            "local_model": local_model,
            "pinned": pinned,
            "default_max_tokens": default_max_tokens,
            "system_prompt": system_prompt,
            "enabled": True,
        },
    )
    return profile


@transaction.atomic
def profile_save(*, profile: Profile, actor: User | None, changed: list[str]) -> Profile:
    """Save a profile edited in the admin or the API; the change is audited in the same transaction."""
    created = profile.pk is None
    profile.save()
    admin_action_record(
        actor=actor,
        action=AdminAction.Action.CREATED if created else AdminAction.Action.CHANGED,
        obj=profile,
        changes={name: _plain(getattr(profile, name)) for name in changed},
    )
    return profile


@transaction.atomic
def profile_delete(*, profile: Profile, actor: User | None) -> None:
    admin_action_record(actor=actor, action=AdminAction.Action.DELETED, obj=profile)
    profile.delete()


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
