"""OpenAI-shaped errors for /v1: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class OpenAIError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(*, message: str, status: int, code: str | None, param: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(error: OpenAIError) -> HttpResponse:
    body = error_body(message=str(error), status=error.status, code=error.code, param=error.param)
    response = JsonResponse(body, status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def param_from_loc(loc: list[Any] | tuple[Any, ...]) -> str | None:
    """Turn pydantic's ('body', 'payload', 'messages', 0, 'content') into 'messages[0].content'."""
    parts = list(loc)
    while parts and parts[0] in ("body", "payload"):
        parts.pop(0)
    # Union members add their type name to the path; they mean nothing to a client.
    parts = [
        part for part in parts if not (isinstance(part, str) and ("[" in part or part in {"str", "list[ContentPart]"}))
    ]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or None
