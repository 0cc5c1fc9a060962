"""The /v1 data plane (django-ninja, async): OpenAI-compatible endpoints, routed by routing rules.

The Anthropic Messages endpoints live in ``inference.anthropic`` on the same ``api``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security.base import AuthBase

from audit.metrics import request_observe
from audit.services import RequestAudit, request_audit_write
from catalog.models import ModelKind, Profile
from catalog.selectors import profile_for_model_name, profiles_servable
from inference.constants import OWNED_BY, SSE_DONE, SSE_HEARTBEAT
from inference.engine.client import RequestStream
from inference.engine.types import EmbeddingRequest, EngineError, EngineEvent, FinishEvent, GenerationRequest
from inference.errors import OpenAIError, error_response, param_from_loc, sse_data, sse_error
from inference.runtime import engine_client
from inference.schemas import ChatCompletionRequest, CompletionRequest
from inference.services import (
    IMAGE_TOKENS_BOUND,
    TEMPLATE_TOKENS_PER_MESSAGE,
    chat_images,
    chat_request,
    completion_request,
    message_bytes,
    new_completion_id,
    now,
    require_kind,
    usage_body,
)
from mlxhub.accounts.limits import LimitExceeded, Reservation, usage_reserve
from mlxhub.accounts.models import ApiKey
from mlxhub.accounts.services import ApiKeyError, api_key_aauthenticate, secret_from_headers
from routing.backends import CircuitOpenError, UpstreamError
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.proxy import BACKEND_HEADER, ClientProtocol, cloud_serve, error_as_openai, event_stream_response
from routing.selectors import Route, Target, routing_rule_aresolve
from routing.translation.errors import anthropic_error_body

logger = logging.getLogger(__name__)


class ApiKeyAuth(AuthBase):
    """`Authorization: Bearer mlxh-…` or `x-api-key: mlxh-…`."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    async def __call__(self, request: HttpRequest) -> ApiKey:
        try:
            return await api_key_aauthenticate(secret=secret_from_headers(request.headers))
        except ApiKeyError as exc:
            raise OpenAIError(str(exc), status=401, code=exc.code) from exc


api = NinjaAPI(
    title="MLX Hub data plane",
    version="1",
    description="OpenAI-compatible API served by MLX Hub.",
    urls_namespace="v1",
    auth=ApiKeyAuth(),
    docs_url="/docs",
)


@api.exception_handler(OpenAIError)
def _openai_error(request: HttpRequest, exc: OpenAIError) -> HttpResponse:
    # Logged with the request id (the log filter adds it), so a client's x-request-id leads here.
    logger.info("request refused: %s %s param=%s (%s)", exc.status, exc.code or "-", exc.param or "-", exc)
    if _authed(request):
        _governed_for(request).close(status=exc.status, error_type=exc.code or "error")
    if wants_anthropic(request):
        response = JsonResponse(anthropic_error_body(status=exc.status, message=str(exc)), status=exc.status)
        for name, value in exc.headers.items():
            response[name] = value
        return response
    return error_response(exc)


def wants_anthropic(request: HttpRequest) -> bool:
    """Anthropic's endpoints answer errors in Anthropic's shape: {"type": "error", "error": {...}}."""
    return request.path.startswith("/v1/messages")


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
    return _openai_error(request, OpenAIError(message, status=400, code="invalid_request_error", param=param))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if exc.status_code == 400 and message.startswith("Cannot parse"):
        message = "We could not parse the JSON body of your request: it is not valid JSON."
    return _openai_error(request, OpenAIError(message, status=exc.status_code, code="invalid_request_error"))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    message = f"The request body is larger than {settings.MLXHUB_MAX_BODY_BYTES} bytes."
    return _openai_error(request, OpenAIError(message, status=413, code="request_too_large"))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unexpected error on %s", request.path)
    return _openai_error(
        request,
        OpenAIError(
            "The server had an error while processing your request; the request id is in the logs.",
            status=500,
            code="internal_error",
        ),
    )


def model_not_found(model_name: str) -> OpenAIError:
    return OpenAIError(
        f"The model '{model_name}' does not exist or you do not have access to it.",
        status=404,
        code="model_not_found",
        param="model",
    )


async def _resolve_profile(model_name: str, api_key: ApiKey) -> Profile:
    profile = await profile_for_model_name(name=model_name)
    if profile is None or not api_key.allows_model(model_name):
        raise model_not_found(model_name)
    return profile


async def route_for(model_name: str, api_key: ApiKey) -> Route:
    """The key's allow-list applies to the name the client asked for, whatever the route."""
    if not api_key.allows_model(model_name):
        raise model_not_found(model_name)
    return await routing_rule_aresolve(model_name=model_name)


# Local refusals that mean "not here, try the next target": the engine's full queue, a model that
# cannot load, a profile that does not exist (or is disabled).
FALL_THROUGH_CODES = frozenset({"queue_full", "model_load_failed", "model_not_found"})


async def serve_routed(
    governed: Governed,
    route: Route,
    *,
    local: Callable[[Profile], Awaitable[HttpResponseBase]],
    cloud: Callable[[Target], Awaitable[HttpResponseBase]],
) -> HttpResponseBase:
    """Try the route's targets in order; fall through only while nothing has reached the client."""
    try:
        return await _serve_targets(governed, route, local=local, cloud=cloud)
    except asyncio.CancelledError:
        # The client left while the view was still waiting (admission, a load, an upstream).
        if not governed.abandoned:
            governed.close(status=499, error_type="client_disconnected", cancelled=True)
        raise


async def _serve_targets(
    governed: Governed,
    route: Route,
    *,
    local: Callable[[Profile], Awaitable[HttpResponseBase]],
    cloud: Callable[[Target], Awaitable[HttpResponseBase]],
) -> HttpResponseBase:
    for position, target in enumerate(route.targets):
        governed.audit.backend = target.backend
        governed.audit.model_served = target.profile or target.model
        try:
            if target.is_local:
                profile = await profile_for_model_name(name=target.profile)
                if profile is None:
                    raise model_not_found(route.model)
                response = await local(profile)
            else:
                response = await cloud(target)
            response[BACKEND_HEADER] = target.backend
            return response
        except UpstreamError as exc:
            error, falls = error_as_openai(exc), exc.retryable or isinstance(exc, CircuitOpenError)
        except OpenAIError as exc:
            error, falls = exc, exc.code in FALL_THROUGH_CODES
        if position == len(route.targets) - 1 or not falls:
            raise error
        logger.warning("falling through from %s for %s: %s", target.backend, route.model, error)
    raise AssertionError("unreachable: a route has at least one target")


def _model_card(profile: Profile, stats: dict[str, Any]) -> dict[str, Any]:
    model_stats = stats.get("models", {}).get(profile.local_model.path, {})
    return {
        "id": profile.name,
        "object": "model",
        "created": int(profile.created_at.timestamp()),
        "owned_by": OWNED_BY,
        # loaded, loading or unloaded; memory is what the loaded weights hold (0 when unloaded).
        "state": model_stats.get("state", "unloaded"),
        "memory_bytes": model_stats.get("weights_bytes", 0) if model_stats.get("state") == "loaded" else 0,
        "kind": profile.local_model.kind,
        "context_length": profile.effective_context_length(),
        "pinned": profile.pinned,
        "kernel_path": model_stats.get("kernel_path"),
    }


@api.get("/models", summary="List models")
async def list_models(request: HttpRequest) -> HttpResponse:
    api_key: ApiKey = request.auth  # type: ignore[attr-defined]
    stats = engine_client().stats()
    cards = [_model_card(p, stats) async for p in profiles_servable() if api_key.allows_model(p.name)]
    return JsonResponse({"object": "list", "data": cards})


@api.get("/models/{model_id}", summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    profile = await _resolve_profile(model_id, request.auth)  # type: ignore[attr-defined]
    return JsonResponse(_model_card(profile, engine_client().stats()))


@api.get("/engine", summary="Engine status: loaded models, running and waiting requests")
async def engine_status(request: HttpRequest) -> HttpResponse:
    return JsonResponse(engine_client().stats())


def _open(generation: GenerationRequest | EmbeddingRequest) -> RequestStream:
    try:
        return engine_client().open(generation)
    except EngineError as exc:
        raise _engine_failure(exc.as_event()) from exc


def _engine_failure(event: EngineEvent) -> OpenAIError:
    assert event["type"] == "error"
    retry_after = event.get("retry_after")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return OpenAIError(
        event["message"], status=event["status"], code=event["code"], param=event["param"], headers=headers
    )


async def _next_event(stream: RequestStream, timeout: float | None) -> EngineEvent | None:
    event = await stream.next_event(timeout=timeout)
    # Python 3.11's asyncio.wait_for returns an event that raced a cancellation and drops the
    # cancellation: a client that left at that moment would keep its slot until max_tokens.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return event


class Governed:
    """One data-plane request's bookkeeping, closed exactly once whatever happens:
    the limit reservation is settled to real usage, metrics move, the audit row is queued."""

    def __init__(self, request: HttpRequest, *, endpoint: str, model: str, streamed: bool) -> None:
        api_key: ApiKey = request.auth  # type: ignore[attr-defined]
        self.api_key = api_key
        self.audit = RequestAudit(
            request_id=getattr(request, "request_id", "-"),
            endpoint=endpoint,
            model_requested=model,
            user_id=api_key.owner_id,
            team_id=api_key.team_id,
            key_prefix=api_key.prefix,
            streamed=streamed,
        )
        self.reservation: Reservation | None = None
        self.closed = False
        self.abandoned = False
        self.seen: FinishEvent = {
            "type": "finish",
            "text": "",
            "finish_reason": "cancelled",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
        }
        request.governed = self  # type: ignore[attr-defined]  # the error handlers close it

    def observe(self, event: EngineEvent) -> None:
        """Track what the engine has reported, so an abandoned request still settles to real counts."""
        if event["type"] == "accepted":
            self.seen["prompt_tokens"] = event["prompt_tokens"]
            self.seen["cached_tokens"] = event["cached_tokens"]
        elif event["type"] == "delta" or (event["type"] == "finish" and event["text"]):
            self.audit.mark_first_token()
        if event["type"] == "delta":
            self.seen["completion_tokens"] = event["tokens"]

    def abandon(self, stream: RequestStream) -> None:
        """The client left: cancel in the engine and close when the engine says what it produced."""
        if self.closed:
            return
        self.abandoned = True
        stream.on_terminal = lambda event: self.close(
            status=499,
            error_type="client_disconnected",
            finish=event if event["type"] == "finish" else self.seen,
            cancelled=True,
        )
        stream.cancel()
        # Should the engine never answer (it always does), close on what was seen.
        asyncio.get_running_loop().call_later(
            ABANDON_GRACE_SECONDS,
            lambda: self.close(status=499, error_type="client_disconnected", finish=self.seen, cancelled=True),
        )

    def reserve(self, cost: int) -> None:
        if self.reservation is not None:  # a fallback attempt: the first target's reservation stands
            return
        try:
            self.reservation = usage_reserve(api_key=self.api_key, cost=cost)
        except LimitExceeded as exc:
            raise OpenAIError(
                str(exc),
                status=429,
                code="rate_limit_exceeded",
                param=exc.limit,
                headers={"Retry-After": str(exc.retry_after)},
            ) from exc

    def close(
        self, *, status: int, error_type: str = "", finish: FinishEvent | None = None, cancelled: bool = False
    ) -> None:
        if self.closed:
            return
        self.closed = True
        audit = self.audit
        audit.status_code = status
        audit.error_type = error_type
        audit.cancelled = cancelled or (finish is not None and finish["finish_reason"] == "cancelled")
        # Without a finish (timeout, failure, a client gone) what the engine reported so far is what was used.
        counts = finish if finish is not None else self.seen
        audit.prompt_tokens = counts["prompt_tokens"]
        audit.completion_tokens = counts["completion_tokens"]
        audit.cached_tokens = counts["cached_tokens"]
        if self.reservation is not None:
            try:
                self.reservation.settle(audit.prompt_tokens + audit.completion_tokens)
            except Exception:  # a store outage must not lose the audit row or fail a finished response
                logger.exception("could not settle the usage reservation")
        latency = time.monotonic() - audit.started
        ttft = None if audit.first_token_at is None else audit.first_token_at - audit.started
        request_observe(
            endpoint=audit.endpoint,
            # The served name, never the client's free text: every label value is a new series.
            model=audit.model_served or "unknown",
            backend=audit.backend,
            status=status,
            prompt_tokens=audit.prompt_tokens,
            completion_tokens=audit.completion_tokens,
            latency=latency,
            ttft=ttft,
        )
        try:
            request_audit_write(audit=audit)
        except Exception:  # the response is already decided; never fail it over bookkeeping
            logger.exception("could not queue the audit row")


# How long an abandoned request waits for the engine's word on what it produced.
ABANDON_GRACE_SECONDS = 5.0


def _authed(request: HttpRequest) -> bool:
    return isinstance(getattr(request, "auth", None), ApiKey)


def _governed_for(request: HttpRequest) -> Governed:
    """The request's bookkeeping; for a body refused before the view ran, a fresh one (status only)."""
    governed: Governed | None = getattr(request, "governed", None)
    if governed is not None:
        return governed
    endpoint = request.path.removeprefix("/v1/").strip("/").replace("/", ".")
    model = ""
    try:
        body = json.loads(request.body or b"null")
        model = str(body.get("model", ""))[:200] if isinstance(body, dict) else ""
    except (ValueError, RecursionError, RequestDataTooBig):  # best effort: the body was refused already
        pass
    return Governed(request, endpoint=endpoint, model=model, streamed=False)


def _estimated_cost(generation: GenerationRequest, context_length: int | None) -> int:
    """An upper bound on prompt + completion tokens, known before tokenizing.

    Byte-level BPE never makes more tokens than bytes (plus the chat template's
    few special tokens), so reserving bytes + max_tokens cannot under-reserve.
    """
    if generation.prompt_tokens is not None:
        prompt = len(generation.prompt_tokens)
    elif generation.messages is not None:
        prompt = sum(message_bytes(m) + TEMPLATE_TOKENS_PER_MESSAGE for m in generation.messages)
        prompt += IMAGE_TOKENS_BOUND * len(generation.images)
    else:
        prompt = len((generation.prompt or "").encode()) + 1
    if context_length:
        prompt = min(prompt, context_length)
    completion = generation.max_tokens or max(0, (context_length or 0) - prompt)
    return prompt + completion


class Format(ABC):
    """How one endpoint's responses look: a chat completion or a text completion."""

    endpoint: str
    object_name: str
    chunk_object: str

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_completion_id(self.id_prefix)
        self.created = now()

    id_prefix = "cmpl"

    def envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": OWNED_BY,
            "choices": choices,
        }

    def body(self, text: str, finish: FinishEvent) -> dict[str, Any]:
        body = self.envelope(self.object_name, [self.choice(text, _finish_reason(finish))])
        body["usage"] = _usage(finish)
        return body

    def chunk(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        chunk = self.envelope(self.chunk_object, [self.delta(text, finish_reason)])
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self, finish: FinishEvent) -> dict[str, Any]:
        chunk = self.envelope(self.chunk_object, [])
        chunk["usage"] = _usage(finish)
        return chunk

    def first_chunk(self) -> dict[str, Any] | None:
        return None

    @abstractmethod
    def choice(self, text: str, finish_reason: str) -> dict[str, Any]: ...

    @abstractmethod
    def delta(self, text: str | None, finish_reason: str | None) -> dict[str, Any]: ...


class ChatFormat(Format):
    endpoint = "chat.completions"
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def first_chunk(self) -> dict[str, Any] | None:
        chunk = self.chunk(None, None)
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return chunk

    def choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}

    def delta(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


class CompletionFormat(Format):
    endpoint = "completions"
    object_name = "text_completion"
    chunk_object = "text_completion"

    def choice(self, text: str, finish_reason: str) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def delta(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}


def _finish_reason(finish: FinishEvent) -> str:
    return "length" if finish["finish_reason"] == "length" else "stop"


def _usage(finish: FinishEvent) -> dict[str, Any]:
    return usage_body(
        prompt_tokens=finish["prompt_tokens"],
        completion_tokens=finish["completion_tokens"],
        cached_tokens=finish["cached_tokens"],
    )


async def _first_event(stream: RequestStream, timeout: float) -> EngineEvent:
    """Wait for admission; a client that leaves meanwhile cancels the request."""
    try:
        event = await _next_event(stream, timeout)
    except BaseException:
        stream.cancel()
        raise
    if event is None:
        stream.cancel()
        raise OpenAIError("The request timed out before it started.", status=504, code="timeout")
    if event["type"] == "error":
        raise _engine_failure(event)
    return event


async def _collect(stream: RequestStream, governed: Governed, deadline: float) -> tuple[str, FinishEvent]:
    pieces: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        while True:
            event = await _next_event(stream, max(0.0, deadline - loop.time()))
            if event is None:
                raise OpenAIError("The request timed out.", status=504, code="timeout")
            governed.observe(event)
            if event["type"] == "delta":
                pieces.append(event["text"])
            elif event["type"] == "finish":
                pieces.append(event["text"])
                return "".join(pieces), event
            elif event["type"] == "error":
                raise _engine_failure(event)
    except asyncio.CancelledError:
        governed.abandon(stream)
        raise
    finally:
        stream.cancel()  # no-op once finished; frees the slot when the client left


async def _stream_events(
    stream: RequestStream, fmt: Format, governed: Governed, deadline: float
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    finish: FinishEvent | None = None
    status, error_type = 200, ""
    try:
        first = fmt.first_chunk()
        if first:
            yield sse_data(first)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                status, error_type = 504, "timeout"
                yield sse_error(OpenAIError("The request timed out.", status=504, code="timeout"))
                break
            event = await _next_event(stream, min(settings.MLXHUB_HEARTBEAT_SECONDS, remaining))
            if event is None:
                yield SSE_HEARTBEAT  # keeps proxies and clients waiting through a long prefill
                continue
            governed.observe(event)
            if event["type"] == "delta":
                yield sse_data(fmt.chunk(event["text"], None))
            elif event["type"] == "finish":
                finish = event
                if event["text"]:
                    governed.audit.mark_first_token()
                    yield sse_data(fmt.chunk(event["text"], None))
                yield sse_data(fmt.chunk(None, _finish_reason(event)))
                if fmt.include_usage:
                    yield sse_data(fmt.usage_chunk(event))
                break
            elif event["type"] == "error":
                failure = _engine_failure(event)
                status, error_type = failure.status, failure.code or "engine_error"
                yield sse_error(failure)
                break
        yield SSE_DONE
    except (asyncio.CancelledError, GeneratorExit):
        governed.abandon(stream)  # a client that disconnected leaves the batch at the next step
        raise
    finally:
        stream.cancel()
        if not governed.abandoned:
            governed.close(status=status, error_type=error_type, finish=finish or governed.seen)


async def _serve(
    governed: Governed,
    generation: GenerationRequest,
    profile: Profile,
    fmt: Format,
    *,
    stream_response: bool,
    relay: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None,
) -> HttpResponseBase:
    governed.reserve(_estimated_cost(generation, profile.effective_context_length()))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MLXHUB_ENDPOINT_TIMEOUTS.get(
        fmt.endpoint.split(".")[0], settings.MLXHUB_REQUEST_TIMEOUT
    )
    stream = _open(generation)
    governed.observe(await _first_event(stream, max(0.0, deadline - loop.time())))
    if not stream_response:
        text, finish = await _collect(stream, governed, deadline)
        governed.close(status=200, finish=finish)
        return JsonResponse(fmt.body(text, finish))
    chunks = _stream_events(stream, fmt, governed, deadline)
    return event_stream_response(relay(chunks) if relay else chunks)


def cloud_cost(messages: Any, max_tokens: int | None) -> int:
    """Bytes of the messages bound their tokens (as for local models); no max_tokens: Anthropic's default."""
    return len(json.dumps(messages).encode()) + (max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS)


@api.post("/chat/completions", summary="Create a chat completion")
async def chat_completions(request: HttpRequest, payload: ChatCompletionRequest) -> HttpResponseBase:
    governed = Governed(request, endpoint=ChatFormat.endpoint, model=payload.model, streamed=payload.stream)
    route = await route_for(payload.model, governed.api_key)
    logger.info("chat completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    async def local(profile: Profile) -> HttpResponseBase:
        require_kind(profile, "chat completions")
        generation = chat_request(payload=payload, profile=profile, request_id=governed.audit.request_id)
        if profile.local_model.kind == ModelKind.VISION:
            generation.images = await chat_images(payload)
        fmt = ChatFormat(payload.model, include_usage)
        return await _serve(governed, generation, profile, fmt, stream_response=payload.stream)

    async def cloud(target: Target) -> HttpResponseBase:
        body = payload.model_dump(exclude_none=True)
        governed.reserve(cloud_cost(body["messages"], payload.max_completion_tokens or payload.max_tokens))
        return await cloud_serve(
            governed=governed,
            target=target,
            client=ClientProtocol.OPENAI,
            body=body,
            requested_model=payload.model,
            stream=payload.stream,
            include_usage=include_usage,
        )

    return await serve_routed(governed, route, local=local, cloud=cloud)


@api.post("/completions", summary="Create a completion")
async def completions(request: HttpRequest, payload: CompletionRequest) -> HttpResponseBase:
    governed = Governed(request, endpoint=CompletionFormat.endpoint, model=payload.model, streamed=payload.stream)
    route = await route_for(payload.model, governed.api_key)
    logger.info("completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    async def local(profile: Profile) -> HttpResponseBase:
        require_kind(profile, "text completions")
        generation = completion_request(payload=payload, profile=profile, request_id=governed.audit.request_id)
        fmt = CompletionFormat(payload.model, include_usage)
        return await _serve(governed, generation, profile, fmt, stream_response=payload.stream)

    async def cloud(target: Target) -> HttpResponseBase:
        # Text completions are a legacy endpoint: OpenAI-shaped upstreams serve them, Anthropic's API has none.
        body = payload.model_dump(exclude_none=True)
        governed.reserve(cloud_cost(body["prompt"], payload.max_tokens))
        return await cloud_serve(
            governed=governed,
            target=target,
            client=ClientProtocol.OPENAI,
            body=body,
            requested_model=payload.model,
            stream=payload.stream,
            include_usage=include_usage,
            text_completion=True,
        )

    return await serve_routed(governed, route, local=local, cloud=cloud)


from inference import anthropic as _anthropic  # noqa: E402, F401  (registers /v1/messages on `api`)
from inference import embeddings_api as _embeddings  # noqa: E402, F401  (registers /v1/embeddings on `api`)
