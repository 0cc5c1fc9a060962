"""ASGI entry point: Django for HTTP (a short middleware stack for /v1); the resident engine starts with the process."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxhub.settings")

django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs settings loaded)
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.db import reset_queries  # noqa: E402

from mlxhub.handler import DataPlaneHandler  # noqa: E402
from mlxhub.lifecycle import Admission  # noqa: E402
from mlxhub.middleware import DATA_PLANE_MIDDLEWARE, BodySizeLimit  # noqa: E402


def data_plane_application() -> ASGIHandler:
    """Django's handler with /v1's own middleware. A handler reads settings.MIDDLEWARE once, when it is made
    (here, at start-up, on one thread): the page stack is put back right after."""
    if not settings.DEBUG:
        # Without DEBUG no query is logged, so there is nothing to reset; the receiver walks every database
        # alias through asgiref's thread-critical local on each request (~0.2 ms of a gateway call here).
        signals.request_started.disconnect(reset_queries)
    pages_middleware = settings.MIDDLEWARE
    settings.MIDDLEWARE = DATA_PLANE_MIDDLEWARE
    try:
        return DataPlaneHandler()
    finally:
        settings.MIDDLEWARE = pages_middleware


class PathDispatch:
    """/v1/... to the data plane's handler, everything else to the pages' (same URLs, same views)."""

    def __init__(self, data_plane: Any, pages: Any) -> None:
        self.data_plane = data_plane
        self.pages = pages

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.data_plane if scope.get("path", "").startswith("/v1/") else self.pages
        await app(scope, receive, send)


http_application = PathDispatch(data_plane_application(), django_application)
# Admission is outermost: it counts every request in flight (a drain waits for them) and refuses new /v1 ones
# while the process stops.
application = ProtocolTypeRouter(
    {"http": Admission(BodySizeLimit(http_application, limit=settings.MLXHUB_MAX_BODY_BYTES))}
)

if settings.MLXHUB_ENGINE_PRELOAD:
    from inference.services import engine_start

    engine_start()
