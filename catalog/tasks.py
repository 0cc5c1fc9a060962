"""Catalog jobs. Arguments are ids; a task whose row is gone returns quietly."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import Task, shared_task
from celery.signals import worker_ready

from catalog.constants import DOWNLOAD_MAX_RETRIES, DOWNLOAD_RETRY_BACKOFF, DOWNLOAD_RETRY_BACKOFF_MAX
from catalog.hub import HubUnavailable
from catalog.models import LocalModel
from catalog.services import (
    ModelFolderError,
    download_execute,
    download_fail,
    download_requeue,
    downloads_recover,
    local_model_register,
)

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_jitter=True, max_retries=3)
def local_model_refresh(local_model_id: int) -> str | None:
    """Re-read a registered folder (size, kind, context length) after it changed on disk."""
    local_model = LocalModel.objects.filter(pk=local_model_id).first()
    if local_model is None:
        return None
    try:
        refreshed = local_model_register(path=Path(local_model.path), repo_id=local_model.repo_id)
    except ModelFolderError:
        logger.warning("model folder %s is no longer valid", local_model.path)
        return None
    return str(refreshed.size_bytes)


@shared_task(
    bind=True,
    autoretry_for=(HubUnavailable,),
    retry_backoff=DOWNLOAD_RETRY_BACKOFF,
    retry_backoff_max=DOWNLOAD_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=DOWNLOAD_MAX_RETRIES,
    # With Redis, a message whose worker died unacknowledged is delivered again; the claim makes that safe.
    acks_late=True,
    reject_on_worker_lost=True,
)
def download_run(self: Task, download_id: int) -> str:  # type: ignore[type-arg]
    """Fetch a repository file by file; network errors and 5xx retry with back-off and resume the files."""
    task_id = self.request.id or ""
    try:
        return download_execute(download_id=download_id, task_id=task_id, worker=self.request.hostname or "")
    except HubUnavailable as exc:
        attempt = self.request.retries + 1
        if self.request.retries >= self.max_retries:
            download_fail(
                download_id=download_id, task_id=task_id, error=f"Gave up after {attempt} attempts: {exc.message}"
            )
            return "failed"
        logger.warning("download %s: %s (attempt %s, retrying)", download_id, exc.message, attempt)
        download_requeue(
            download_id=download_id,
            task_id=task_id,
            error=f"{exc.message} Retrying (attempt {attempt} of {self.max_retries}).",
        )
        raise


@worker_ready.connect
def _recover_downloads(**kwargs: object) -> None:
    """A worker that starts picks up the downloads a killed worker left behind."""
    try:
        recovered = downloads_recover()
    except Exception:  # the worker must start even if the database is not there yet
        logger.exception("could not look for interrupted downloads")
        return
    if recovered:
        logger.info("queued interrupted downloads again: %s", recovered)
