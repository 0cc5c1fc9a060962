"""A download's folders on disk: where its files arrive, the lock beside them, and the move into place.

The move into place is recorded before it happens (``<folder>.installed`` beside the partial folder, naming
the job). A worker that dies after the move but before the job is marked done leaves that note, the model
folder in place and no partial folder; the next worker reads the note and finishes the job without fetching
a byte again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from catalog.constants import INSTALLED_SUFFIX, PART_SUFFIX, PARTIAL_DIR_NAME, TRASH_DIR_NAME
from catalog.models import Download


def _folder_name(repo_id: str, revision: str) -> str:
    name = repo_id.replace("/", "--")
    if revision != "main":
        name += "--" + re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    return name


def models_dir() -> Path:
    return Path(settings.MLXHUB_MODELS_DIR)


def download_model_dir(download: Download) -> Path:
    """Where a finished download lives; it appears there only once every file is verified."""
    return models_dir() / _folder_name(download.repo_id, download.revision)


def download_partial_dir(download: Download) -> Path:
    """Where files arrive (``<file>.part`` while incomplete); kept across pauses, failures and worker restarts."""
    return models_dir() / PARTIAL_DIR_NAME / _folder_name(download.repo_id, download.revision)


def _installed_note(download: Download) -> Path:
    partial_dir = download_partial_dir(download)
    return partial_dir.parent / f"{partial_dir.name}{INSTALLED_SUFFIX}"


def partial_bytes(partial_dir: Path, files: list[dict[str, Any]]) -> int:
    done = 0
    for item in files:
        for candidate in (partial_dir / item["path"], partial_dir / (item["path"] + PART_SUFFIX)):
            if candidate.is_file():
                done += min(candidate.stat().st_size, item["size"])
                break
    return done


def remove_partial(download: Download) -> None:
    shutil.rmtree(download_partial_dir(download), ignore_errors=True)
    _installed_note(download).unlink(missing_ok=True)


@contextmanager
def folder_lock(partial_dir: Path, *, wait: float) -> Iterator[bool]:
    """An exclusive lock beside the partial folder, so two workers never write the same files.

    flock is released by the kernel when a worker dies, so a killed worker never leaves it held.
    """
    partial_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = partial_dir.parent / f"{partial_dir.name}.lock"
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def download_install(download: Download, partial_dir: Path) -> Path:
    """Move the verified folder into place in one rename; an older copy goes to the trash first."""
    final = download_model_dir(download)
    note = _installed_note(download)
    written = note.with_name(note.name + ".new")
    written.write_text(json.dumps({"download": download.pk, "commit": download.commit_sha}))
    os.replace(written, note)  # the note is whole or absent, never half written
    if final.exists():
        trash = models_dir() / TRASH_DIR_NAME / f"{final.name}-{int(time.time())}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        final.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    partial_dir.rename(final)
    return final


def download_installed_before(download: Download) -> Path | None:
    """The model folder an earlier attempt of this job moved into place before it died, if it did.

    Only with this job's note, no partial folder left (the rename happened) and the folder there; a folder
    from an older download of the same repository has no note naming this job, so it is fetched again.
    """
    note, final = _installed_note(download), download_model_dir(download)
    if download_partial_dir(download).exists() or not final.is_dir() or not note.is_file():
        return None
    try:
        recorded = json.loads(note.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(recorded, dict)
        or recorded.get("download") != download.pk
        or recorded.get("commit") != download.commit_sha
    ):
        return None
    return final


def download_install_done(download: Download) -> None:
    """The job is marked done: the note has served."""
    _installed_note(download).unlink(missing_ok=True)
