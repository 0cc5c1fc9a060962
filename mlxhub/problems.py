"""RFC 7807 problem details for every error on the control API (/api)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from mlxhub.logging import request_id_var

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(
    *, status_code: int, title: str, detail: str, errors: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status_code,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in the control API")
        return problem_response(
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
            title="Internal Server Error",
            detail="An unexpected error occurred; the request id is in the logs.",
        )
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            status_code=response.status_code,
            title="Invalid request",
            detail="One or more fields are invalid.",
            errors=response.data,
        )
    detail = "Not found." if isinstance(exc, Http404) else str(getattr(exc, "detail", exc))
    title = {
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        415: "Unsupported Media Type",
        429: "Too Many Requests",
    }.get(response.status_code, "Error")
    headers = {k: v for k, v in response.items() if k.lower() in {"www-authenticate", "retry-after"}}
    return problem_response(status_code=response.status_code, title=title, detail=detail, headers=headers)
