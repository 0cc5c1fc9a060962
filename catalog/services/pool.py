"""Loading and unloading a profile's model in the engine's pool on an admin's request, audited."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import Profile
from inference.engine.types import EngineError
from inference.runtime import engine_client, engine_started
from inference.services import model_spec_for


def pool_models() -> dict[str, dict[str, Any]]:
    """The engine's stats per model folder; empty when the engine has not started (reading never starts it)."""
    if not engine_started():
        return {}
    models: dict[str, dict[str, Any]] = engine_client().stats().get("models", {})
    return models


def profile_load(*, profile: Profile, actor: User | None) -> dict[str, Any]:
    """Load the profile's model (evicting idle ones when the budget needs it) and return its stats.

    Raises EngineError: 503 ``insufficient_memory`` (with ``retry_after``) or ``model_load_failed``, 504 when
    the load outlasts MLXHUB_REQUEST_TIMEOUT (it goes on in the engine).
    """
    stats = _wait(engine_client().preload(model_spec_for(profile)), doing="loading")
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=profile, changes={"load": True})
    return stats


def profile_unload(*, profile: Profile, actor: User | None, force: bool = False) -> dict[str, Any]:
    """Unload the profile's model (and so every profile on the same folder).

    Raises EngineError(409, ``model_busy``) while requests are in flight unless ``force``, which ends them
    with a 503 ``model_unloaded`` error.
    """
    if engine_started():
        result = _wait(engine_client().unload(model_spec_for(profile)["key"], force=force), doing="unloading")
    else:
        result = {"state": "unloaded"}  # nothing can be loaded in an engine that never started
    changes = {"unload": True, "force": force}
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=profile, changes=changes)
    return result


def _wait(future: Future[dict[str, Any]], *, doing: str) -> dict[str, Any]:
    # No transaction is open here: the wait may be long and SQLite's IMMEDIATE transactions lock the database.
    timeout = settings.MLXHUB_REQUEST_TIMEOUT
    try:
        return future.result(timeout=timeout)
    except TimeoutError as exc:
        raise EngineError(
            f"The engine is still {doing} this model after {timeout:.0f} s; its state shows when it is done.",
            status=504,
            code="timeout",
        ) from exc
