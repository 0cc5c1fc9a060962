"""Give every request an id: taken from a sane `x-request-id`, else generated."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from mlxhub.logging import request_id_var

logger = logging.getLogger("mlxhub.requests")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id(request: HttpRequest) -> str:
    incoming = request.headers.get("x-request-id", "")
    return incoming if _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"


def _log_failure(request: HttpRequest, response: HttpResponseBase) -> None:
    # Inside the request-id context, so an error's x-request-id always leads to a log line.
    if response.status_code >= 400:
        logger.info("%s %s -> %s", request.method, request.path, response.status_code)


class HybridMiddleware:
    """Django middleware that runs natively in both sync and async stacks."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            # Django's documented pattern for hybrid middleware; the stub types only functions.
            markcoroutinefunction(self)  # type: ignore[type-var]


class RequestIdMiddleware(HybridMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = new_request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response: HttpResponseBase = self.get_response(request)
            _log_failure(request, response)
        finally:
            request_id_var.reset(token)
        response["x-request-id"] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = new_request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        _log_failure(request, response)
        response["x-request-id"] = request_id
        return response


class OpenAIErrorShapeMiddleware(HybridMiddleware):
    """Errors under /v1 that Django or ninja answer in plain text (405, 413, a
    body too large to read) are rewritten in OpenAI's error shape."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return self._reshape(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return self._reshape(request, await self.get_response(request))

    @staticmethod
    def _reshape(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if not request.path.startswith("/v1/") or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json") or response.streaming:
            return response
        from inference.errors import OpenAIError, error_response

        messages = {
            405: f"Method {request.method} is not allowed for {request.path}.",
            413: "The request body is too large.",
        }
        message = messages.get(response.status_code, f"The request failed with status {response.status_code}.")
        reshaped = error_response(OpenAIError(message, status=response.status_code, code="invalid_request_error"))
        if response.has_header("Allow"):
            reshaped["Allow"] = response["Allow"]
        return reshaped
