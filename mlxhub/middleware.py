"""Give every request an id: taken from a sane `x-request-id`, else generated."""

from __future__ import annotations

import json
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
        response["request-id"] = request_id  # the header Anthropic's clients read (``_request_id``)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = new_request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        _log_failure(request, response)
        response["x-request-id"] = request_id
        response["request-id"] = request_id  # the header Anthropic's clients read (``_request_id``)
        return response


# /v1's own, shorter stack (``mlxhub.asgi``): only middleware that runs inline on the event loop, so an
# API request crosses to a worker thread only for the database (the page stack's MiddlewareMixin
# classes each hop there and back, twice, per request).
DATA_PLANE_MIDDLEWARE = [
    "mlxhub.proxies.TrustedProxyMiddleware",  # before the security checks: who may say the request was https
    "mlxhub.middleware.RequestIdMiddleware",
    "mlxhub.middleware.OpenAIErrorShapeMiddleware",
    "mlxhub.middleware.DataPlaneSecurityMiddleware",
    "mlxhub.middleware.DataPlaneSessionMiddleware",
]


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


class BodySizeLimit:
    """ASGI: a request body over ``limit`` bytes is answered 413 as soon as it passes the limit, with or
    without a Content-Length (a chunked upload is counted as it arrives, never spooled whole first).

    Django reads a body without a Content-Length as empty; a chunked body within the limit is therefore
    buffered here and handed on with the Content-Length it turned out to have.
    """

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope = {**scope, "headers": [*scope.get("headers", []), (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, when it comes

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        message = f"The request body is larger than {self.limit} bytes."
        request_id = f"req_{uuid.uuid4().hex}"
        if scope.get("path", "").startswith("/v1/messages"):  # Anthropic's shape, as the other errors there
            anthropic = {"type": "request_too_large", "message": message}
            body = json.dumps({"type": "error", "error": anthropic, "request_id": request_id}).encode()
            content_type = b"application/json"
        elif scope.get("path", "").startswith("/v1/"):
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}
            body, content_type = json.dumps({"error": error}).encode(), b"application/json"
        else:
            problem = {"type": "about:blank", "title": "Payload too large", "status": 413, "detail": message}
            body, content_type = json.dumps(problem).encode(), b"application/problem+json"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"request-id", request_id.encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class DataPlaneSecurityMiddleware(HybridMiddleware):
    """Django's SecurityMiddleware (https redirect, HSTS, nosniff, referrer policy) for /v1, called inline:
    its hooks only read settings and headers, so they need no hop to a worker thread."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        from django.middleware.security import SecurityMiddleware

        self.security = SecurityMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return self.security(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        redirect = self.security.process_request(request)
        if redirect is not None:
            return redirect
        response: HttpResponseBase = await self.get_response(request)
        return self.security.process_response(request, response)  # type: ignore[arg-type]


class DataPlaneSessionMiddleware(HybridMiddleware):
    """A signed-in user's session for /v1 (the pages' playground): the session and ``request.auser`` are set
    up lazily, inline; nothing reads the database unless a request without an API key uses its cookie."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        raise RuntimeError("the data plane runs on ASGI only")

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        from importlib import import_module

        from django.conf import settings
        from django.contrib.auth import aget_user
        from django.contrib.auth.models import AnonymousUser

        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(session_key)  # type: ignore[attr-defined]

        async def auser() -> Any:
            if session_key is None:
                return AnonymousUser()
            return await aget_user(request)

        request.auser = auser  # type: ignore[attr-defined]
        response: HttpResponseBase = await self.get_response(request)
        return response
