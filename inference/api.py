"""The /v1 data plane (django-ninja, async): OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security.base import AuthBase

from catalog.models import Profile
from catalog.selectors import profile_for_model_name, profiles_servable
from inference.constants import OWNED_BY, SSE_DONE, SSE_HEARTBEAT
from inference.engine.client import RequestStream
from inference.engine.types import EngineError, EngineEvent, FinishEvent, GenerationRequest
from inference.errors import OpenAIError, error_response, param_from_loc, sse_error
from inference.runtime import engine_client
from inference.schemas import ChatCompletionRequest, CompletionRequest
from inference.services import chat_request, completion_request, new_completion_id, now, usage_body
from mlxhub.accounts.models import ApiKey
from mlxhub.accounts.services import ApiKeyError, api_key_aauthenticate, secret_from_headers

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
    return error_response(exc)


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
    return error_response(
        OpenAIError(
            "The server had an error while processing your request; the request id is in the logs.",
            status=500,
            code="internal_error",
        )
    )


async def _resolve_profile(model_name: str, api_key: ApiKey) -> Profile:
    profile = await profile_for_model_name(name=model_name)
    if profile is None or not api_key.allows_model(model_name):
        raise OpenAIError(
            f"The model '{model_name}' does not exist or you do not have access to it.",
            status=404,
            code="model_not_found",
            param="model",
        )
    return profile


def _model_card(profile: Profile, stats: dict[str, Any]) -> dict[str, Any]:
    model_stats = stats.get("models", {}).get(profile.local_model.path, {})
    return {
        "id": profile.name,
        "object": "model",
        "created": int(profile.created_at.timestamp()),
        "owned_by": OWNED_BY,
        "state": model_stats.get("state", "unloaded"),
        "kind": profile.local_model.kind,
        "context_length": profile.effective_context_length(),
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


def _open(generation: GenerationRequest) -> RequestStream:
    try:
        return engine_client().open(generation)
    except EngineError as exc:
        headers = {"Retry-After": "1"} if exc.status == 429 else {}
        raise OpenAIError(str(exc), status=exc.status, code=exc.code, param=exc.param, headers=headers) from exc


def _engine_failure(event: EngineEvent) -> OpenAIError:
    assert event["type"] == "error"
    return OpenAIError(event["message"], status=event["status"], code=event["code"], param=event["param"])


async def _next_event(stream: RequestStream, timeout: float | None) -> EngineEvent | None:
    event = await stream.next_event(timeout=timeout)
    # Python 3.11's asyncio.wait_for returns an event that raced a cancellation and drops the
    # cancellation: a client that left at that moment would keep its slot until max_tokens.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return event


async def _first_event(stream: RequestStream) -> EngineEvent:
    """Wait for admission; a client that leaves meanwhile cancels the request."""
    try:
        event = await _next_event(stream, settings.MLXHUB_REQUEST_TIMEOUT)
    except BaseException:
        stream.cancel()
        raise
    if event is None:
        stream.cancel()
        raise OpenAIError("The request timed out before it started.", status=504, code="timeout")
    if event["type"] == "error":
        raise _engine_failure(event)
    return event


async def _collect(stream: RequestStream) -> tuple[str, FinishEvent]:
    pieces: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MLXHUB_REQUEST_TIMEOUT
    try:
        while True:
            event = await _next_event(stream, max(0.0, deadline - loop.time()))
            if event is None:
                raise OpenAIError("The request timed out.", status=504, code="timeout")
            if event["type"] == "delta":
                pieces.append(event["text"])
            elif event["type"] == "finish":
                pieces.append(event["text"])
                return "".join(pieces), event
            elif event["type"] == "error":
                raise _engine_failure(event)
    finally:
        stream.cancel()  # no-op once finished; frees the slot when the client left


ChunkMaker = Callable[[str | None, str | None, bool], dict[str, Any]]


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _stream_events(
    stream: RequestStream,
    *,
    make_chunk: ChunkMaker,
    include_usage: bool,
    usage_chunk: Callable[[FinishEvent], dict[str, Any]],
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MLXHUB_REQUEST_TIMEOUT
    try:
        first = make_chunk(None, None, True)
        if first:
            yield _sse(first)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield sse_error(OpenAIError("The request timed out.", status=504, code="timeout"))
                break
            event = await _next_event(stream, min(settings.MLXHUB_HEARTBEAT_SECONDS, remaining))
            if event is None:
                yield SSE_HEARTBEAT  # keeps proxies and clients waiting through a long prefill
                continue
            if event["type"] == "delta":
                yield _sse(make_chunk(event["text"], None, False))
            elif event["type"] == "finish":
                if event["text"]:
                    yield _sse(make_chunk(event["text"], None, False))
                reason = "length" if event["finish_reason"] == "length" else "stop"
                yield _sse(make_chunk(None, reason, False))
                if include_usage:
                    yield _sse(usage_chunk(event))
                break
            elif event["type"] == "error":
                yield sse_error(_engine_failure(event))
                break
        yield SSE_DONE
    finally:
        stream.cancel()  # a client that disconnected leaves the batch at the next step


def _streaming_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api.post("/chat/completions", summary="Create a chat completion")
async def chat_completions(request: HttpRequest, payload: ChatCompletionRequest) -> HttpResponseBase:
    profile = await _resolve_profile(payload.model, request.auth)  # type: ignore[attr-defined]
    request_id: str = getattr(request, "request_id", new_completion_id("req"))
    generation = chat_request(payload=payload, profile=profile, request_id=request_id)
    logger.info("chat completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    stream = _open(generation)
    accepted = await _first_event(stream)
    completion_id = new_completion_id("chatcmpl")
    created = now()
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    if not payload.stream:
        text, finish = await _collect(stream)
        return JsonResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": payload.model,
                "system_fingerprint": OWNED_BY,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "length" if finish["finish_reason"] == "length" else "stop",
                    }
                ],
                "usage": usage_body(
                    prompt_tokens=finish["prompt_tokens"],
                    completion_tokens=finish["completion_tokens"],
                    cached_tokens=finish["cached_tokens"],
                ),
            }
        )

    def make_chunk(text: str | None, finish_reason: str | None, first: bool) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if first:
            delta = {"role": "assistant", "content": ""}
        elif text is not None:
            delta = {"content": text}
        chunk: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": payload.model,
            "system_fingerprint": OWNED_BY,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(finish: FinishEvent) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": payload.model,
            "system_fingerprint": OWNED_BY,
            "choices": [],
            "usage": usage_body(
                prompt_tokens=finish["prompt_tokens"],
                completion_tokens=finish["completion_tokens"],
                cached_tokens=finish["cached_tokens"],
            ),
        }

    del accepted
    return _streaming_response(
        _stream_events(stream, make_chunk=make_chunk, include_usage=include_usage, usage_chunk=usage_chunk)
    )


@api.post("/completions", summary="Create a completion")
async def completions(request: HttpRequest, payload: CompletionRequest) -> HttpResponseBase:
    profile = await _resolve_profile(payload.model, request.auth)  # type: ignore[attr-defined]
    request_id: str = getattr(request, "request_id", new_completion_id("req"))
    generation = completion_request(payload=payload, profile=profile, request_id=request_id)
    logger.info("completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    stream = _open(generation)
    await _first_event(stream)
    completion_id = new_completion_id("cmpl")
    created = now()
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)

    if not payload.stream:
        text, finish = await _collect(stream)
        return JsonResponse(
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": payload.model,
                "system_fingerprint": OWNED_BY,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": "length" if finish["finish_reason"] == "length" else "stop",
                    }
                ],
                "usage": usage_body(
                    prompt_tokens=finish["prompt_tokens"],
                    completion_tokens=finish["completion_tokens"],
                    cached_tokens=finish["cached_tokens"],
                ),
            }
        )

    def make_chunk(text: str | None, finish_reason: str | None, first: bool) -> dict[str, Any]:
        if first:
            return {}  # completions streams have no role chunk
        chunk: dict[str, Any] = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": payload.model,
            "system_fingerprint": OWNED_BY,
            "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(finish: FinishEvent) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": payload.model,
            "system_fingerprint": OWNED_BY,
            "choices": [],
            "usage": usage_body(
                prompt_tokens=finish["prompt_tokens"],
                completion_tokens=finish["completion_tokens"],
                cached_tokens=finish["cached_tokens"],
            ),
        }

    return _streaming_response(
        _stream_events(stream, make_chunk=make_chunk, include_usage=include_usage, usage_chunk=usage_chunk)
    )
