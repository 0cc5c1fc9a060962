"""/healthz: the process answers. /readyz: database, broker and engine are ready, and the engine's CPU kernel path.

Anyone may ask /readyz (load balancers do, without credentials), so it says only ok or not ok per
component; why a component fails (an error naming a path or a host), the kernel plan and the lifecycle
state are for a staff session or a control key.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from mlxhub import lifecycle
from mlxhub.kernels import process_plan

logger = logging.getLogger(__name__)


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return None


def _check_broker() -> str | None:
    from mlxhub.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _check_engine() -> str | None:
    from inference.runtime import engine_client

    try:
        return await engine_client().problem()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _key_sees_details(secret: str) -> bool:
    from mlxhub.accounts.services import ApiKeyError, api_key_authenticate

    try:
        return api_key_authenticate(secret=secret).is_control
    except ApiKeyError:
        return False


def _user_sees_details(user: Any) -> bool:
    from mlxhub.accounts.models import Role
    from mlxhub.accounts.selectors import user_role

    return bool(user.is_authenticated and (user.is_staff or user_role(user=user) == Role.ADMIN))


async def sees_details(request: HttpRequest) -> bool:
    """A staff or admin session, or a control key: the callers who may read why a component is not ready."""
    from mlxhub.accounts.services import secret_from_headers

    if secret := secret_from_headers(request.headers):
        return await sync_to_async(_key_sees_details)(secret)
    auser = getattr(request, "auser", None)
    if auser is None:
        return False
    return await sync_to_async(_user_sees_details)(await auser())


async def readyz(request: HttpRequest) -> JsonResponse:
    if lifecycle.refusal() is not None:
        # Stopping (a drain) or the engine died: out of the balancer's rotation at once, no check needed.
        checks: dict[str, str | None] = {"lifecycle": lifecycle.state()}
    else:
        checks = {
            "database": await sync_to_async(_check_database, thread_sensitive=False)(),
            "broker": await sync_to_async(_check_broker, thread_sensitive=False)(),
            "engine": await _check_engine(),
        }
    failing = {name: error for name, error in checks.items() if error}
    if failing:
        logger.warning("not ready: %s", failing)
    status = 200 if not failing else 503
    if not await sees_details(request):
        return JsonResponse(
            {
                "status": "ok" if not failing else "unavailable",
                "checks": {name: ("ok" if not error else "unavailable") for name, error in checks.items()},
            },
            status=status,
        )
    body: dict[str, object] = {
        "status": "ok" if not failing else "unavailable",
        "checks": {name: (error if error else "ok") for name, error in checks.items()},
        "lifecycle": lifecycle.state() or "serving",
    }
    if settings.MLXHUB_ENGINE_PRELOAD:
        body["kernels"] = process_plan(settings.MLXHUB_CPU_KERNELS).as_dict()
    return JsonResponse(body, status=status)
