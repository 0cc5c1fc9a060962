"""GET /v1/models, /v1/models/{id}: the profiles a caller may use; GET /v1/engine: the engine's figures."""

from __future__ import annotations

import dataclasses
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja import Router

from catalog.models import Profile
from catalog.selectors import profile_for_model_name, profiles_servable
from inference.constants import OWNED_BY
from inference.engine.stats import EngineStats
from inference.runtime import engine_client
from inference.serving import model_not_found
from mlxhub.accounts.callers import Caller
from mlxhub.accounts.models import Role
from mlxhub.accounts.selectors import user_role

router = Router(tags=["Models"])

# What only an admin sees of a model: its folder on the server and the raw text of its last load error.
ADMIN_ONLY = ("path", "last_error")


def _model_card(profile: Profile, stats: EngineStats) -> dict[str, Any]:
    model = stats.model(profile.local_model.path)
    return {
        "id": profile.name,
        "object": "model",
        "created": int(profile.created_at.timestamp()),
        "owned_by": OWNED_BY,
        # loaded, loading or unloaded; memory is what the loaded weights hold (0 when unloaded).
        "state": model.state,
        "memory_bytes": model.memory_bytes,
        "kind": profile.local_model.kind,
        "context_length": profile.effective_context_length(),
        "pinned": profile.pinned,
        "kernel_path": model.kernel_path,
    }


async def _allowed_profiles(caller: Caller) -> list[Profile]:
    return [profile async for profile in profiles_servable() if caller.allows_model(profile.name)]


@router.get("/models", summary="List models")
async def list_models(request: HttpRequest) -> JsonResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    stats = await engine_client().stats()
    return JsonResponse({"object": "list", "data": [_model_card(p, stats) for p in await _allowed_profiles(caller)]})


@router.get("/models/{model_id}", summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model_id: str) -> JsonResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    profile = await profile_for_model_name(name=model_id)
    if profile is None or not caller.allows_model(model_id):
        raise model_not_found(model_id)
    return JsonResponse(_model_card(profile, await engine_client().stats()))


@router.get("/engine", summary="Engine status: the caller's models, running and waiting requests, memory")
async def engine_status(request: HttpRequest) -> JsonResponse:
    """Models by the profile names the caller may use; paths and raw load errors for admins only."""
    caller: Caller = request.auth  # type: ignore[attr-defined]
    admin = await sync_to_async(user_role)(user=caller.user) == Role.ADMIN
    stats = await engine_client().stats()
    models = {}
    for profile in await _allowed_profiles(caller):
        model = stats.model(profile.local_model.path)
        figures = dataclasses.asdict(model)
        figures.pop("key")
        if not admin:
            for name in ADMIN_ONLY:
                figures.pop(name)
        figures["load_failed"] = bool(model.last_error)
        figures["in_flight"] = stats.in_flight.get(model.key, 0)
        models[profile.name] = figures
    return JsonResponse(
        {
            "object": "engine",
            "started": stats.started,
            "alive": stats.alive,
            "steps": stats.steps,
            "evictions": stats.evictions,
            "waiting_for_memory": stats.waiting_for_memory,
            "memory": dataclasses.asdict(stats.memory),
            "models": models,
        }
    )
