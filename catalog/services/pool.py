"""Loading and unloading a profile's model in the engine's pool on an admin's request, audited."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import Profile
from inference.engine.stats import ModelStats
from inference.engine.types import EngineError
from inference.engine_requests import model_spec_for
from inference.runtime import engine_client


def pool_models() -> dict[str, ModelStats]:
    """The engine's figures per model folder; empty when no engine runs (reading never starts one)."""
    return async_to_sync(engine_client().stats)().models


def profile_load(*, profile: Profile, actor: User | None) -> ModelStats:
    """Load the profile's model (evicting idle ones when the budget needs it) and return its figures.

    Raises EngineError: 503 ``insufficient_memory`` (with ``retry_after``) or ``model_load_failed``, 504 when
    the load outlasts MLXHUB_REQUEST_TIMEOUT (it goes on in the engine).
    """
    stats = async_to_sync(_within_timeout)(engine_client().preload(model_spec_for(profile)), "loading")
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=profile, changes={"load": True})
    return stats


def profile_unload(*, profile: Profile, actor: User | None, force: bool = False) -> ModelStats:
    """Unload the profile's model (and so every profile on the same folder).

    Raises EngineError(409, ``model_busy``) while requests are in flight unless ``force``, which ends them
    with a 503 ``model_unloaded`` error.
    """
    key = model_spec_for(profile)["key"]
    stats = async_to_sync(_within_timeout)(engine_client().unload(key, force=force), "unloading")
    changes = {"unload": True, "force": force}
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=profile, changes=changes)
    return stats


async def _within_timeout(work: object, doing: str) -> ModelStats:
    # No transaction is open here: the wait may be long and SQLite's IMMEDIATE transactions lock the database.
    timeout = settings.MLXHUB_REQUEST_TIMEOUT
    try:
        return await asyncio.wait_for(work, timeout)  # type: ignore[arg-type]
    except TimeoutError as exc:
        raise EngineError(
            f"The engine is still {doing} this model after {timeout:.0f} s; its state shows when it is done.",
            status=504,
            code="timeout",
        ) from exc
