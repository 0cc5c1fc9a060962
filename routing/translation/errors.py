"""Error bodies: Anthropic's shape from a status code, and the message out of an upstream's error body."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return ANTHROPIC_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error_body(*, status: int, message: str, request_id: str | None = None) -> Json:
    body: Json = {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}
    if request_id:  # Anthropic's errors name the request, as its request-id header does
        body["request_id"] = request_id
    return body


def upstream_error_message(body: Any) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an OpenAI- or Anthropic-shaped error body, whichever it is."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return (
                str(error.get("message") or "upstream error"),
                error.get("code") or error.get("type"),
                error.get("param"),
            )
        if isinstance(error, str):
            return error, None, None
    return "The upstream provider returned an error.", None, None
