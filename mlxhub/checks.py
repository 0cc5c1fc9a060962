"""System checks that refuse insecure production settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_production_hosts(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    if not settings.DEBUG and "*" in settings.ALLOWED_HOSTS:
        errors.append(
            Error(
                "MLXHUB_ALLOWED_HOSTS contains '*' while DEBUG is off.",
                hint="List the host names MLX Hub is served under.",
                id="mlxhub.E001",
            )
        )
    if not settings.DEBUG and len(settings.SECRET_KEY) < 50:
        errors.append(
            Error(
                "The secret key is shorter than 50 characters.",
                hint="Unset MLXHUB_SECRET_KEY to let MLX Hub generate one.",
                id="mlxhub.E002",
            )
        )
    return errors
