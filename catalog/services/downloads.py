"""Downloads from the hub: the job row, its states, and the worker's side (fetch, verify, install, register).

A job is claimed by one task at a time (a conditional UPDATE on the row), its files are written by one
process at a time (flock beside its partial folder), and a worker that dies leaves a lease that expires,
so the next worker takes the job over and resumes the partial files.
"""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from huggingface_hub.utils import HFValidationError, validate_repo_id

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog import events, hub
from catalog.constants import (
    DOWNLOAD_FILE_PATTERNS,
    DOWNLOAD_LOCK_WAIT,
    DOWNLOAD_PROGRESS_INTERVAL,
    MAX_ETA_SECONDS,
    PART_SUFFIX,
    WEIGHT_SUFFIXES,
)
from catalog.models import Download
from catalog.selectors import download_active_for, hub_token_value
from catalog.services.disk import disk_free_bytes, disk_reservation_lock, disk_reserved_bytes
from catalog.services.download_folders import (
    download_install,
    download_install_done,
    download_installed_before,
    download_partial_dir,
    folder_lock,
    models_dir,
    partial_bytes,
    remove_partial,
    sha256_of,
)
from catalog.services.folders import ModelFolderError, local_model_register


class DownloadRefused(Exception):
    """A download cannot start (bad repository id, not an MLX model, not enough disk); safe to show."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class DownloadStateError(Exception):
    """The job is not in a state that allows this action (pausing a finished download …)."""


@dataclass(frozen=True)
class DownloadStarted:
    download: Download
    created: bool


def _check_free_disk(*, needed: int, download_id: int | None = None) -> None:
    """Refuse unless the free disk covers ``needed``, every other active job's reservation and the margin."""
    free = disk_free_bytes(models_dir())
    reserved = disk_reserved_bytes(excluding=download_id)
    margin = settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES
    if free - reserved - needed < margin:
        promised = f", {reserved:,} are promised to downloads in progress" if reserved else ""
        raise DownloadRefused(
            f"Not enough free disk space in {models_dir()}: the download needs {needed:,} bytes, "
            f"{free:,} are free{promised} and {margin:,} must stay free (MLXHUB_DOWNLOAD_MIN_FREE_BYTES).",
            status=507,
        )


def _wanted_files(info: Any) -> list[dict[str, Any]]:
    files = []
    for sibling in info.siblings or []:
        if not any(fnmatch.fnmatch(sibling.rfilename, pattern) for pattern in DOWNLOAD_FILE_PATTERNS):
            continue
        relative = PurePosixPath(sibling.rfilename)
        if relative.is_absolute() or ".." in relative.parts:
            raise DownloadRefused(f"The hub listed a file outside the repository: {sibling.rfilename!r}.", status=502)
        if sibling.size is None:
            raise DownloadRefused(f"The hub did not give the size of {sibling.rfilename}.", status=502)
        files.append(
            {"path": sibling.rfilename, "size": sibling.size, "sha256": sibling.lfs.sha256 if sibling.lfs else ""}
        )
    names = {item["path"] for item in files}
    if "config.json" not in names or not any(name.endswith(WEIGHT_SUFFIXES) for name in names):
        raise DownloadRefused(f"{info.id} is not an MLX model: it needs config.json and .safetensors weights.")
    return sorted(files, key=lambda item: (item["size"], item["path"]))


def _enqueue(download_id: int) -> None:
    from catalog.tasks import download_run  # tasks import services

    transaction.on_commit(lambda: download_run.apply_async(args=[download_id], queue=settings.MLXHUB_DOWNLOAD_QUEUE))


def _lease_expired(download: Download) -> bool:
    lease = timedelta(seconds=settings.MLXHUB_DOWNLOAD_LEASE_SECONDS)
    return download.heartbeat_at is None or download.heartbeat_at < timezone.now() - lease


def download_start(*, repo_id: str, revision: str = "main", requested_by: User | None = None) -> DownloadStarted:
    """Queue a download, or join the job already queued, running or paused for that repository and revision."""
    repo_id, revision = repo_id.strip(), (revision or "main").strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise DownloadRefused(f"{repo_id!r} is not a hub repository id: {exc}") from exc
    existing = download_active_for(repo_id=repo_id, revision=revision)
    if existing is not None:
        if existing.status == Download.Status.RUNNING and _lease_expired(existing):
            _enqueue(existing.pk)  # its worker died; the claim in download_execute takes it over
        return DownloadStarted(existing, created=False)
    info = hub.model_info(repo_id, revision=revision, token=hub_token_value())
    files = _wanted_files(info)
    total = sum(item["size"] for item in files)
    probe = Download(repo_id=repo_id, revision=revision)
    already = partial_bytes(download_partial_dir(probe), files)
    actor = requested_by if requested_by is not None and requested_by.is_authenticated else None
    try:
        # The row is this job's reservation of disk: it must be committed before another check may run.
        with disk_reservation_lock(models_dir()), transaction.atomic():
            _check_free_disk(needed=total - already)
            download = Download.objects.create(
                repo_id=repo_id,
                revision=revision,
                commit_sha=info.sha or "",
                files=files,
                bytes_total=total,
                bytes_done=already,
                requested_by=actor,
            )
            admin_action_record(
                actor=actor,
                action=AdminAction.Action.CREATED,
                obj=download,
                changes={"repo_id": repo_id, "revision": revision, "bytes_total": total},
            )
            _enqueue(download.pk)
    except IntegrityError:
        # Another request created the job between our check and our insert: join it.
        joined = download_active_for(repo_id=repo_id, revision=revision)
        if joined is None:
            raise
        return DownloadStarted(joined, created=False)
    events.push_progress(events.progress_event(download))
    return DownloadStarted(download, created=True)


def _transition(
    download: Download, *, allowed: tuple[str, ...], to: str, actor: User | None, **changes: Any
) -> Download:
    with transaction.atomic():
        updated = Download.objects.filter(pk=download.pk, status__in=allowed).update(status=to, **changes)
        download.refresh_from_db()
        if not updated:
            raise DownloadStateError(f"A {download.get_status_display().lower()} download cannot become {to}.")
        admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=download, changes={"status": to})
    events.push_progress(events.progress_event(download))
    return download


def download_pause(*, download: Download, actor: User | None = None) -> Download:
    """The worker sees the flag between two chunks, stops, and keeps the partial files for resume."""
    statuses = Download.Status
    return _transition(
        download,
        allowed=(statuses.QUEUED, statuses.RUNNING),
        to=statuses.PAUSED,
        actor=actor,
        speed_bps=0.0,
        eta_seconds=None,
    )


def download_resume(*, download: Download, actor: User | None = None) -> Download:
    """Queue a paused or failed job again; it resumes from the partial files (also the admin's retry)."""
    statuses = Download.Status
    try:
        with transaction.atomic():
            download = _transition(
                download,
                allowed=(statuses.PAUSED, statuses.FAILED),
                to=statuses.QUEUED,
                actor=actor,
                error="",
                finished_at=None,
            )
            _enqueue(download.pk)
    except IntegrityError as exc:
        raise DownloadStateError("Another download of this repository and revision is already active.") from exc
    return download


def download_cancel(*, download: Download, actor: User | None = None) -> Download:
    """Stop the job and remove its partial files (now, or by the worker as soon as it stops)."""
    statuses = Download.Status
    download = _transition(
        download,
        allowed=(statuses.QUEUED, statuses.RUNNING, statuses.PAUSED, statuses.FAILED),
        to=statuses.CANCELLED,
        actor=actor,
        speed_bps=0.0,
        eta_seconds=None,
        finished_at=timezone.now(),
    )
    with folder_lock(download_partial_dir(download), wait=0) as locked:
        if locked:  # no worker holds the folder; one that does removes it itself when it sees the flag
            remove_partial(download)
    return download


def _claim(download_id: int, *, task_id: str, worker: str) -> Download | None:
    """Take the job: a queued one, or a running one whose worker stopped writing (it died)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.MLXHUB_DOWNLOAD_LEASE_SECONDS)
    running = Download.Status.RUNNING
    claimable = Q(status=Download.Status.QUEUED) | Q(status=running, heartbeat_at__lt=stale)
    claimable |= Q(status=running, heartbeat_at__isnull=True)
    claimed = Download.objects.filter(claimable, pk=download_id).update(
        status=running, task_id=task_id, worker=worker, heartbeat_at=now, error="", attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    Download.objects.filter(pk=download_id, started_at__isnull=True).update(started_at=now)
    return Download.objects.get(pk=download_id)


class _Progress:
    """Counts bytes; at most every DOWNLOAD_PROGRESS_INTERVAL writes the row, which doubles as the stop check.

    The write is conditional on the row still being this task's running job, so a pause, a cancel or a
    takeover by another worker all show up as "0 rows updated" and stop the stream between two chunks.
    """

    SPEED_WINDOW = 5.0

    def __init__(self, download: Download, task_id: str) -> None:
        self.download = download
        self.task_id = task_id
        self.bytes_done = download.bytes_done
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), self.bytes_done)])
        self._throttle = hub.Throttle(DOWNLOAD_PROGRESS_INTERVAL)
        self._push_throttle = hub.Throttle(1.0)

    def set_done(self, bytes_done: int) -> None:
        self.bytes_done = bytes_done
        self.write()

    def add(self, count: int) -> None:
        self.bytes_done += count
        if self._throttle.ready():
            self.write()

    def write(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self.bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.SPEED_WINDOW:
            self._samples.popleft()
        first_time, first_bytes = self._samples[0]
        speed = (self.bytes_done - first_bytes) / (now - first_time) if now > first_time else 0.0
        remaining = max(self.download.bytes_total - self.bytes_done, 0)
        eta = min(int(remaining / speed), MAX_ETA_SECONDS) if speed > 0 else None
        updated = Download.objects.filter(
            pk=self.download.pk, task_id=self.task_id, status=Download.Status.RUNNING
        ).update(bytes_done=self.bytes_done, speed_bps=max(speed, 0.0), eta_seconds=eta, heartbeat_at=timezone.now())
        if not updated:
            raise hub.DownloadStopped
        self.download.bytes_done, self.download.speed_bps, self.download.eta_seconds = self.bytes_done, speed, eta
        if self._push_throttle.ready():
            events.push_progress(events.progress_event(self.download))


def _fetch_files(download: Download, partial_dir: Path, progress: _Progress, token: str | None) -> None:
    for item in download.files:
        target = partial_dir / item["path"]
        if target.is_file() and target.stat().st_size == item["size"]:
            continue
        part = partial_dir / (item["path"] + PART_SUFFIX)
        part.parent.mkdir(parents=True, exist_ok=True)
        what = f"{download.repo_id}/{item['path']}"
        url = hub.file_url(download.repo_id, item["path"], revision=download.commit_sha or download.revision)
        try:
            hub.stream_file(url, part, token=token, expected_size=item["size"], on_bytes=progress.add, what=what)
        except hub.HubOversize:
            part.unlink(missing_ok=True)  # cut at its listed size, but not the file that was listed
            raise
        size = part.stat().st_size
        if size != item["size"] or (item["sha256"] and sha256_of(part) != item["sha256"]):
            part.unlink()
            progress.set_done(partial_bytes(partial_dir, download.files))
            # Transient by nature (a proxy cut the body short, a corrupted transfer): fetch it again.
            raise hub.HubUnavailable(f"{what} arrived damaged ({size:,} of {item['size']:,} bytes or a bad checksum).")
        part.rename(target)


def _finish(download: Download, task_id: str, **changes: Any) -> bool:
    updated = Download.objects.filter(pk=download.pk, task_id=task_id, status=Download.Status.RUNNING).update(
        speed_bps=0.0, eta_seconds=None, finished_at=timezone.now(), **changes
    )
    download.refresh_from_db()
    events.push_progress(events.progress_event(download))
    return bool(updated)


def download_fail(*, download_id: int, task_id: str, error: str) -> None:
    download = Download.objects.filter(pk=download_id).first()
    if download is not None:
        _finish(download, task_id, status=Download.Status.FAILED, error=error)


def download_requeue(*, download_id: int, task_id: str, error: str) -> None:
    """The task will retry after a back-off: show why, and let any worker take it then."""
    Download.objects.filter(pk=download_id, task_id=task_id, status=Download.Status.RUNNING).update(
        status=Download.Status.QUEUED, error=error, speed_bps=0.0, eta_seconds=None
    )
    download = Download.objects.filter(pk=download_id).first()
    if download is not None:
        events.push_progress(events.progress_event(download))


def download_execute(*, download_id: int, task_id: str, worker: str) -> str:
    """Run one attempt of a download; the worker's side of the job. Returns what became of it.

    HubUnavailable (network errors, 5xx) propagates so the task retries with back-off; the partial
    files stay and the next attempt resumes from them with HTTP range requests.
    """
    download = _claim(download_id, task_id=task_id, worker=worker)
    if download is None:
        return "skipped"
    partial_dir = download_partial_dir(download)
    with folder_lock(partial_dir, wait=DOWNLOAD_LOCK_WAIT) as locked:
        if not locked:
            raise hub.HubUnavailable("Another worker still holds this download's folder.")
        progress = _Progress(download, task_id)
        try:
            # An attempt that died after moving the folder into place left every file there: finish it.
            final = download_installed_before(download)
            if final is None:
                partial_dir.mkdir(parents=True, exist_ok=True)
                progress.set_done(partial_bytes(partial_dir, download.files))
                _check_free_disk(needed=download.bytes_total - progress.bytes_done, download_id=download.pk)
                _fetch_files(download, partial_dir, progress, hub_token_value())
                progress.set_done(download.bytes_total)
                final = download_install(download, partial_dir)
            else:
                progress.set_done(download.bytes_total)
            local_model = local_model_register(path=final, repo_id=download.repo_id, revision=download.revision)
        except hub.DownloadStopped:
            download.refresh_from_db()
            if download.status == Download.Status.CANCELLED:
                remove_partial(download)
            return str(download.status) if download.task_id == task_id else "superseded"
        except (DownloadRefused, hub.HubNotFound, hub.HubAccessDenied, ModelFolderError) as exc:
            download_fail(download_id=download.pk, task_id=task_id, error=getattr(exc, "message", str(exc)))
            return "failed"
        except hub.HubError as exc:
            if isinstance(exc, hub.HubUnavailable):
                raise
            download_fail(download_id=download.pk, task_id=task_id, error=exc.message)
            return "failed"
        except OSError as exc:
            download_fail(download_id=download.pk, task_id=task_id, error=f"Could not write the files: {exc}")
            return "failed"
    _finish(
        download,
        task_id,
        status=Download.Status.DONE,
        local_model=local_model,
        bytes_done=download.bytes_total,
        error="",
    )
    download_install_done(download)
    return "done"


def downloads_recover() -> list[int]:
    """After a worker starts: queue again the jobs whose worker died (and queued ones whose message was lost).

    Returns the ids queued. A running job whose lease is still fresh is queued with a delay until it
    expires; if its worker is in fact alive, the claim then fails and the extra task does nothing.
    """
    from catalog.tasks import download_run

    queued = []
    lease = settings.MLXHUB_DOWNLOAD_LEASE_SECONDS
    for download in Download.objects.filter(status__in=[Download.Status.QUEUED, Download.Status.RUNNING]):
        countdown = 0.0
        if download.status == Download.Status.RUNNING and download.heartbeat_at is not None:
            age = (timezone.now() - download.heartbeat_at).total_seconds()
            countdown = max(0.0, lease - age) + 0.5
        download_run.apply_async(args=[download.pk], queue=settings.MLXHUB_DOWNLOAD_QUEUE, countdown=countdown)
        queued.append(download.pk)
    return queued
