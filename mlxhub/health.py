"""/healthz: the process answers. /readyz: database, broker and engine are ready, and the engine's CPU kernel path."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

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


async def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": await sync_to_async(_check_database, thread_sensitive=False)(),
        "broker": await sync_to_async(_check_broker, thread_sensitive=False)(),
        "engine": await _check_engine(),
    }
    failing = {name: error for name, error in checks.items() if error}
    body = {
        "status": "ok" if not failing else "unavailable",
        "checks": {name: (error if error else "ok") for name, error in checks.items()},
    }
    if settings.MLXHUB_ENGINE_PRELOAD:
        body["kernels"] = process_plan(settings.MLXHUB_CPU_KERNELS).as_dict()
    if failing:
        logger.warning("not ready: %s", failing)
    return JsonResponse(body, status=200 if not failing else 503)
