"""Audit writes: request rows off the response path, admin actions inside the service's transaction."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import DataError, IntegrityError, close_old_connections, models, transaction
from django.utils import timezone

from audit.constants import AUDIT_BATCH_SIZE, AUDIT_FLUSH_SECONDS, AUDIT_WRITE_ATTEMPTS, PURGE_BATCH_SIZE
from audit.models import AdminAction, AuditLog

logger = logging.getLogger(__name__)


def admin_action_record(
    *, actor: User | None, action: str, obj: models.Model, changes: dict[str, Any] | None = None
) -> AdminAction:
    """Call inside the changing service's transaction; ``changes`` must never hold a secret."""
    return AdminAction.objects.create(
        actor=actor,
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        changes=changes or {},
    )


@dataclass
class RequestAudit:
    """What one /v1 request did. Filled in by the view, written once at the end."""

    request_id: str
    endpoint: str
    model_requested: str = ""
    model_served: str = ""
    backend: str = "local"
    user_id: int | None = None
    team_id: int | None = None
    key_prefix: str = ""
    status_code: int = 200
    error_type: str = ""
    streamed: bool = False
    cancelled: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=timezone.now)
    first_token_at: float | None = None
    ended_at: float | None = None  # set when the request is done; the row is built later, off the response path

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def row(self) -> AuditLog:
        values = asdict(self)
        for transient in ("started", "first_token_at", "ended_at"):
            values.pop(transient)
        ended = self.ended_at if self.ended_at is not None else time.monotonic()
        ttft = None if self.first_token_at is None else int((self.first_token_at - self.started) * 1000)
        return AuditLog(**values, latency_ms=int((ended - self.started) * 1000), ttft_ms=ttft)


class AuditWriter:
    """A thread that writes request rows in batches, so no response waits on the database.

    A failed write is retried with backoff; rows that still fail are logged at
    ERROR with their metadata (never text), so nothing is lost silently.
    """

    def __init__(self) -> None:
        self._rows: queue.Queue[RequestAudit] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, audit: RequestAudit) -> None:
        self._idle.clear()
        self._rows.put(audit)
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted row is written (tests, shutdown)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            audits = [self._rows.get()]
            deadline = time.monotonic() + AUDIT_FLUSH_SECONDS
            while len(audits) < AUDIT_BATCH_SIZE:
                try:
                    audits.append(self._rows.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            # Model instances are built here, on the writer's thread: never on the event loop a response waits on.
            self._write([audit.row() for audit in audits])
            if self._rows.empty():
                self._idle.set()

    def _write(self, batch: list[AuditLog]) -> None:
        for attempt in range(1, AUDIT_WRITE_ATTEMPTS + 1):
            try:
                close_old_connections()
                AuditLog.objects.bulk_create(batch)
                return
            except (IntegrityError, DataError):
                # One bad row (a user deleted mid-request) must not take the batch with it.
                self._write_one_by_one(batch)
                return
            except Exception:
                logger.warning("audit write failed (attempt %d of %d)", attempt, AUDIT_WRITE_ATTEMPTS, exc_info=True)
                time.sleep(min(2.0, 0.1 * 2**attempt))
        for row in batch:
            _log_lost(row)

    @staticmethod
    def _write_one_by_one(batch: list[AuditLog]) -> None:
        for row in batch:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                continue
            except (IntegrityError, DataError):
                pass
            # Keep the row without the links that no longer exist.
            row.user_id = row.team_id = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
            except (IntegrityError, DataError):
                _log_lost(row)


def _log_lost(row: AuditLog) -> None:
    logger.error("audit row lost: %s", {field.name: getattr(row, field.attname) for field in row._meta.fields})


audit_writer = AuditWriter()


def request_audit_write(*, audit: RequestAudit) -> None:
    audit.ended_at = time.monotonic()
    audit_writer.submit(audit)


def audit_log_purge(*, older_than_days: int) -> int:
    """Delete rows older than the retention, in batches so a big table is not locked for long."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(AuditLog.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:PURGE_BATCH_SIZE])
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += AuditLog.objects.filter(pk__in=ids).delete()[0]
