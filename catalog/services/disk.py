"""Disk space for downloads: what is free, and what the active jobs have been promised but not written yet.

A job takes its disk over minutes, so the free figure alone lets two jobs admitted a second apart both count
the same free bytes. Every active job (queued, running, paused) therefore reserves the bytes it still has to
write, and a new job is admitted only if the free figure covers the reservations plus its own; the check and
the insert of the job's row happen under one lock, so two processes cannot both pass it.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db.models import F, Sum

from catalog.constants import DISK_LOCK_NAME, PARTIAL_DIR_NAME
from catalog.models import Download


def disk_free_bytes(path: Path) -> int:
    """The free bytes on ``path``'s disk, or MLXHUB_DOWNLOAD_FREE_BYTES when that is set (tests, a cap)."""
    if settings.MLXHUB_DOWNLOAD_FREE_BYTES is not None:
        return int(settings.MLXHUB_DOWNLOAD_FREE_BYTES)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def disk_reserved_bytes(*, excluding: int | None = None) -> int:
    """Bytes the active jobs (but ``excluding``) still have to write: disk they will take that is free now."""
    active = Download.objects.filter(status__in=Download.ACTIVE_STATUSES)
    if excluding is not None:
        active = active.exclude(pk=excluding)
    remaining = active.filter(bytes_total__gt=F("bytes_done")).aggregate(total=Sum(F("bytes_total") - F("bytes_done")))
    return int(remaining["total"] or 0)


@contextmanager
def disk_reservation_lock(models_dir: Path) -> Iterator[None]:
    """Held from the free-disk check until the admitted job's row is committed, across every process.

    A file lock, not a database one: the disk is this machine's, and so are the processes that share it.
    """
    lock_dir = models_dir / PARTIAL_DIR_NAME
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / DISK_LOCK_NAME).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
