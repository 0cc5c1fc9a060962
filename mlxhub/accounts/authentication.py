"""DRF authentication with an MLX Hub API key (Bearer or x-api-key)."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from mlxhub.accounts.models import ApiKey
from mlxhub.accounts.services import ApiKeyError, api_key_authenticate, secret_from_headers


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        secret = secret_from_headers(request.headers)
        if not secret:
            return None  # let session authentication try
        try:
            api_key = api_key_authenticate(secret=secret)
        except ApiKeyError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="mlxhub"'
