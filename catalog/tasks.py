"""Catalog jobs. Arguments are ids; a task whose row is gone returns quietly."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from catalog.models import LocalModel
from catalog.services import ModelFolderError, local_model_register

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
