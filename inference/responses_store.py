"""Stored Responses answers (MLXHUB_RESPONSES_STORE=1): written after an answer, read by their owner only.

A row holds the response object and every input item that led to it, so ``previous_response_id`` rebuilds
the conversation from one row: its input items, its output items, then the new input. Another user's
row is as absent as a row that never was (a 404, as OpenAI answers).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.models import StoredResponse
from mlxhub.accounts.callers import Caller
from routing.translation.responses_api import item_response_id

logger = logging.getLogger(__name__)

Json = dict[str, Any]
PURGE_BATCH_SIZE = 1000
# Only answers that ended are kept: a failed one has nothing to continue from.
STORED_STATUSES = frozenset({"completed", "incomplete"})


def stored_response_create(*, caller: Caller, response: Json, input_items: list[Json]) -> StoredResponse | None:
    """Keep an answer for its owner; None when it is not one to keep (or its id is already taken)."""
    if response.get("status") not in STORED_STATUSES:
        return None
    try:
        with transaction.atomic():
            return StoredResponse.objects.create(
                id=str(response["id"]),
                user=caller.user,
                team=caller.team,
                key_prefix=caller.key_prefix,
                model=str(response.get("model") or "")[:200],
                status=str(response["status"]),
                previous_response_id=str(response.get("previous_response_id") or ""),
                response=response,
                input_items=input_items,
            )
    except IntegrityError:  # an upstream that repeats an id: the first answer stays
        logger.warning("a response id was stored already; the new answer is not stored")
        return None


def stored_response_get(*, user_id: int, response_id: str) -> StoredResponse | None:
    return StoredResponse.objects.filter(pk=response_id, user_id=user_id).first()


def stored_response_delete(*, user_id: int, response_id: str) -> bool:
    with transaction.atomic():
        deleted, _ = StoredResponse.objects.filter(pk=response_id, user_id=user_id).delete()
    return deleted > 0


def stored_item_get(*, user_id: int, item_id: str) -> Json | None:
    """An output item of one of the user's stored responses, by its id (MLX Hub's item ids name their
    response; any other id is not found)."""
    response_id = item_response_id(item_id)
    row = stored_response_get(user_id=user_id, response_id=response_id) if response_id else None
    if row is None:
        return None
    return next((item for item in row.response.get("output") or [] if item.get("id") == item_id), None)


def stored_responses_purge(*, older_than_days: int) -> int:
    """Delete rows older than the retention, in batches so a big table is not locked for long."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(StoredResponse.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:PURGE_BATCH_SIZE])
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += StoredResponse.objects.filter(pk__in=ids).delete()[0]


stored_response_acreate = sync_to_async(stored_response_create)
stored_response_aget = sync_to_async(stored_response_get)
stored_response_adelete = sync_to_async(stored_response_delete)
stored_item_aget = sync_to_async(stored_item_get)
