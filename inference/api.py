"""The /v1 data plane (django-ninja, async): one API, its authentication and error handlers, one router per
protocol (``inference.routers``)."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security.base import AuthBase
from ninja.utils import check_csrf

from inference.errors import OpenAIError, error_response, param_from_loc
from inference.routers import anthropic, embeddings, models, openai
from inference.services import Outcome, RequestLedger
from mlxhub.accounts.callers import Caller, caller_for_user
from mlxhub.accounts.services import ApiKeyError, api_key_aauthenticate, secret_from_headers
from routing.translation.errors import anthropic_error_body

logger = logging.getLogger(__name__)


class CallerAuth(AuthBase):
    """`Authorization: Bearer mlxh-…` or `x-api-key: mlxh-…`; without a key, a signed-in user's session
    (the pages' playground) with its CSRF token, so a page elsewhere cannot spend a user's budget."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    async def __call__(self, request: HttpRequest) -> Caller:
        secret = secret_from_headers(request.headers)
        if not secret:
            user: User = await request.auser()  # type: ignore[attr-defined, assignment]
            if user.is_authenticated:
                if check_csrf(request) is not None:
                    raise OpenAIError(
                        "A signed-in request needs the CSRF token in the X-CSRFToken header.",
                        status=403,
                        code="csrf_failed",
                    )
                caller = await caller_for_user(user=user)
                if not caller.may_serve:
                    raise OpenAIError(
                        "Viewers can read but not send requests; ask a team admin for the member role.",
                        status=403,
                        code="permission_denied",
                    )
                return caller
        try:
            return Caller.of_key(await api_key_aauthenticate(secret=secret))
        except ApiKeyError as exc:
            raise OpenAIError(str(exc), status=401, code=exc.code) from exc


api = NinjaAPI(
    title="MLX Hub data plane",
    version="1",
    description="OpenAI- and Anthropic-compatible API served by MLX Hub.",
    urls_namespace="v1",
    auth=CallerAuth(),
    # MLXHUB_API_DOCS off hides the schema with its page: the schema alone lists every route and field.
    docs_url="/docs" if settings.MLXHUB_API_DOCS else None,
    openapi_url="/openapi.json" if settings.MLXHUB_API_DOCS else None,
)
api.add_router("", openai.router)
api.add_router("", anthropic.router)
api.add_router("", embeddings.router)
api.add_router("", models.router)
api.add_router("", "inference.routers.responses.router")


def wants_anthropic(request: HttpRequest) -> bool:
    """Anthropic's endpoints answer errors in Anthropic's shape: {"type": "error", "error": {...}}."""
    return request.path.startswith("/v1/messages")


def render_error(request: HttpRequest, exc: OpenAIError) -> HttpResponse:
    # Logged with the request id (the log filter adds it), so a client's x-request-id leads here.
    logger.info("request refused: %s %s param=%s (%s)", exc.status, exc.code or "-", exc.param or "-", exc)
    if not wants_anthropic(request):
        return error_response(exc)
    body = anthropic_error_body(status=exc.status, message=str(exc), request_id=getattr(request, "request_id", None))
    response = JsonResponse(body, status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def refused_before_serving(request: HttpRequest, exc: OpenAIError) -> HttpResponse:
    """A body refused before its view ran still leaves an audit row (status only) when the caller is known."""
    caller = getattr(request, "auth", None)
    if isinstance(caller, Caller):
        endpoint = request.path.removeprefix("/v1/").strip("/").replace("/", ".")
        ledger = RequestLedger(
            caller=caller,
            request_id=getattr(request, "request_id", "-"),
            endpoint=endpoint,
            model=_model_named_in(request),
            streamed=False,
        )
        ledger.refuse(Outcome(exc.status, exc.code or "error"))
    return render_error(request, exc)


def _model_named_in(request: HttpRequest) -> str:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, RecursionError, RequestDataTooBig):  # best effort: the body was refused already
        return ""
    return str(body.get("model", ""))[:200] if isinstance(body, dict) else ""


@api.exception_handler(OpenAIError)
def _openai_error(request: HttpRequest, exc: OpenAIError) -> HttpResponse:
    return render_error(request, exc)  # the serving path has recorded it in the request's ledger


# Pydantic's error types for a body that is JSON but not an object (an array, null, a number).
NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    loc = list(first.get("loc", []))
    param = param_from_loc(loc)
    if param is None and first.get("type") == "missing":
        message = "The request body is empty; send a JSON object."
    elif param is None and first.get("type") in NOT_AN_OBJECT:
        message = "The request body must be a JSON object."
    else:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}" if param else str(first.get("msg"))
    if first.get("type") == "extra_forbidden" and param:
        message = f"Unrecognized request argument supplied: {param}"
    return refused_before_serving(request, OpenAIError(message, status=400, code="invalid_request_error", param=param))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return render_error(request, OpenAIError("You didn't provide an API key.", status=401, code="missing_api_key"))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if exc.status_code == 400 and message.startswith("Cannot parse"):
        message = "We could not parse the JSON body of your request: it is not valid JSON."
    return refused_before_serving(request, OpenAIError(message, status=exc.status_code, code="invalid_request_error"))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    message = f"The request body is larger than {settings.MLXHUB_MAX_BODY_BYTES} bytes."
    return refused_before_serving(request, OpenAIError(message, status=413, code="request_too_large"))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unexpected error on %s", request.path)
    error = OpenAIError(
        "The server had an error while processing your request; the request id is in the logs.",
        status=500,
        code="internal_error",
    )
    return render_error(request, error)


@csrf_exempt  # a POST to an unknown URL is a 404, not the CSRF middleware's 403
def unknown_url(request: HttpRequest) -> HttpResponse:
    message = f"Unknown request URL: {request.method} {request.path}."
    return render_error(request, OpenAIError(message, status=404, code="unknown_url"))
