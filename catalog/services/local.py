"""Models already on disk: scanning the models folder and the Hugging Face cache, and deleting them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import LocalModel
from catalog.services.download_folders import models_dir
from catalog.services.folders import ModelFolderError, _folder_size, local_model_register


@dataclass
class ScanResult:
    registered: list[LocalModel] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[LocalModel] = field(default_factory=list)


def _model_folders(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Model folders directly under the models folder, or one level down (``org/name``)."""
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if (child / "config.json").is_file():
            repo_id = child.name.replace("--", "/", 1) if "--" in child.name else None
            yield child, repo_id
            continue
        for grandchild in sorted(child.iterdir()):
            if grandchild.is_dir() and (grandchild / "config.json").is_file():
                yield grandchild, f"{child.name}/{grandchild.name}"


def local_models_scan() -> ScanResult:
    """Register what is already on disk: the models folder and the Hugging Face cache. Idempotent."""
    result = ScanResult()
    candidates: list[tuple[Path, str | None, str]] = [
        (path, repo_id, "main") for path, repo_id in _model_folders(models_dir())
    ]
    try:
        cache_info = scan_cache_dir(settings.MLXHUB_HF_CACHE_DIR)
    except CacheNotFound:
        cache_info = None
    if cache_info is not None:
        for repo in cache_info.repos:
            if repo.repo_type != "model":
                continue
            for cached in repo.revisions:
                revision = sorted(cached.refs)[0] if cached.refs else cached.commit_hash
                candidates.append((Path(cached.snapshot_path), repo.repo_id, revision))
    known = {model.path: model for model in LocalModel.objects.all()}
    for path, repo_id, revision in candidates:
        resolved = str(path.resolve())
        existing = known.get(resolved)
        try:
            result.registered.append(
                local_model_register(
                    path=path,
                    repo_id=existing.repo_id if existing else repo_id,
                    revision=existing.revision if existing else revision,
                )
            )
        except ModelFolderError as exc:
            result.skipped.append(str(exc))
    result.missing = [model for model in known.values() if not Path(model.path).is_dir()]
    return result


class LocalModelInUse(Exception):
    """A profile points at the model, or the engine has it loaded."""


@dataclass(frozen=True)
class LocalModelDeleted:
    bytes_freed: int
    files_removed: bool
    profiles_deleted: list[str]


def _loaded_paths() -> set[str]:
    """Model folders the engine has loaded (reading its figures never starts it)."""
    from catalog.services.pool import pool_models

    return {model.path or key for key, model in pool_models().items() if model.state == "loaded"}


def _hf_cache_revision(path: Path) -> tuple[Any, str] | None:
    try:
        cache_info = scan_cache_dir(settings.MLXHUB_HF_CACHE_DIR)
    except CacheNotFound:
        return None
    for repo in cache_info.repos:
        for cached in repo.revisions:
            if Path(cached.snapshot_path).resolve() == path:
                return cache_info, cached.commit_hash
    return None


def local_model_delete(*, local_model: LocalModel, force: bool = False, actor: User | None = None) -> LocalModelDeleted:
    """Delete the row and, for folders MLX Hub owns (models folder, HF cache), the files; report bytes freed.

    Refused while a profile points at it or the engine has it loaded, unless ``force`` (which also deletes
    those profiles). Folders registered from elsewhere are only unregistered: they are the user's files.
    """
    path = Path(local_model.path)
    profiles = list(local_model.profiles.values_list("name", flat=True))
    if not force:
        if str(path) in _loaded_paths():
            raise LocalModelInUse(f"{local_model.repo_id} is loaded by the engine; unload it or force the delete.")
        if profiles:
            raise LocalModelInUse(
                f"{local_model.repo_id} is used by the profile(s) {', '.join(profiles)}; "
                "delete them first or force the delete."
            )
    root = models_dir().resolve()
    owned = path.is_dir() and path.resolve().is_relative_to(root) and path.resolve() != root
    cached = None if owned or not path.is_dir() else _hf_cache_revision(path.resolve())
    with transaction.atomic():
        admin_action_record(
            actor=actor,
            action=AdminAction.Action.DELETED,
            obj=local_model,
            changes={"path": str(path), "force": force, "profiles_deleted": profiles},
        )
        local_model.profiles.all().delete()
        local_model.delete()
    # Files go after the rows: a failure here leaves stray files, never a row pointing at half a model.
    freed, removed = 0, False
    if owned:
        freed = _folder_size(path)
        shutil.rmtree(path)
        removed = True
    elif cached is not None:
        cache_info, commit = cached
        strategy = cache_info.delete_revisions(commit)
        freed = strategy.expected_freed_size
        strategy.execute()
        removed = True
    return LocalModelDeleted(bytes_freed=freed, files_removed=removed, profiles_deleted=profiles)
