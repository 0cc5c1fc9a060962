"""The control API's OpenAPI schema (drf-spectacular), published at /api/schema/ while MLXHUB_API_DOCS is on."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """`Authorization: Bearer mlxh-…` (or `x-api-key`) with a control key."""

    target_class = "mlxhub.accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "An MLX Hub API key with the control scope."}
