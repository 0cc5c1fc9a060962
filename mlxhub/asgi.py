"""ASGI entry point: Django for HTTP; the resident engine starts with the process."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxhub.settings")

django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs settings loaded)
from django.conf import settings  # noqa: E402

from mlxhub.middleware import BodySizeLimit  # noqa: E402

application = ProtocolTypeRouter({"http": BodySizeLimit(django_application, limit=settings.MLXHUB_MAX_BODY_BYTES)})

if settings.MLXHUB_ENGINE_PRELOAD:
    from inference.services import engine_start

    engine_start()
