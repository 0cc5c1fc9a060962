from __future__ import annotations

from celery import shared_task
from django.conf import settings

from inference.responses_store import stored_responses_purge


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_jitter=True, max_retries=3)
def stored_responses_purge_expired() -> int:
    """Periodic: drop stored Responses answers older than MLXHUB_AUDIT_RETENTION_DAYS (the audit's retention:
    a stored conversation never outlives the record of the request that made it)."""
    return stored_responses_purge(older_than_days=settings.MLXHUB_AUDIT_RETENTION_DAYS)
