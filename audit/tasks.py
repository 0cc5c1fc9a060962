from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audit.services import audit_log_purge


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_jitter=True, max_retries=3)
def audit_log_purge_expired() -> int:
    """Periodic: drop audit rows older than MLXHUB_AUDIT_RETENTION_DAYS."""
    return audit_log_purge(older_than_days=settings.MLXHUB_AUDIT_RETENTION_DAYS)
