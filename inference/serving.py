"""The one serving path of /v1: every endpoint, local or cloud, streamed or whole.

An endpoint is a small spec (``Endpoint``): how to build its engine request, what it may
cost, how its answer is rendered, and what to send a cloud upstream. ``serve`` does the
rest the same way for all of them: the caller's allow-list, the route and its fallbacks,
the ledger (reserve at admission, settle and audit exactly once), admission into the
engine, the timeout, heartbeats, and a client that leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, TypeVar

from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from catalog.models import Profile
from catalog.selectors import profile_for_model_name
from inference.engine.client import RequestStream
from inference.engine.types import (
    AcceptedEvent,
    EngineError,
    EngineEvent,
    EngineRequest,
    ErrorEvent,
    GenerationRequest,
)
from inference.engine_requests import check_image_count, fetch_images, local_cost, require_kind
from inference.errors import OpenAIError
from inference.formats.base import Renderer
from inference.runtime import engine_client
from inference.services import CLIENT_LEFT, Outcome, RequestLedger
from mlxhub.accounts.callers import Caller
from routing.backends import CircuitOpenError, UpstreamError
from routing.selectors import Route, Target, routing_rule_aresolve

logger = logging.getLogger(__name__)

BACKEND_HEADER = "x-mlxhub-backend"
# Local refusals that mean "not here, try the next target": the engine's full queue, a model that
# cannot load, a profile that does not exist (or is disabled).
FALL_THROUGH_CODES = frozenset({"queue_full", "model_load_failed", "model_not_found"})

P = TypeVar("P")


def model_not_found(model_name: str) -> OpenAIError:
    return OpenAIError(
        f"The model '{model_name}' does not exist or you do not have access to it.",
        status=404,
        code="model_not_found",
        param="model",
    )


def upstream_failure(exc: UpstreamError) -> OpenAIError:
    return OpenAIError(str(exc), status=exc.status, code=exc.code, param=exc.param)


def engine_failure(error: EngineError | ErrorEvent) -> OpenAIError:
    if not isinstance(error, EngineError):
        error = EngineError.from_event(error)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    return OpenAIError(str(error), status=error.status, code=error.code, param=error.param, headers=headers)


class Serving:
    """What one request's serving knows: who asked, its ledger, and when it must be done."""

    def __init__(self, request: HttpRequest, ledger: RequestLedger, timeout: float) -> None:
        self.request = request
        self.ledger = ledger
        self.deadline = asyncio.get_running_loop().time() + timeout

    @property
    def trace_id(self) -> str:
        return self.ledger.audit.request_id

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


class Endpoint(ABC, Generic[P]):
    """One /v1 endpoint's spec; ``serve`` runs every one the same way."""

    name: ClassVar[str]  # the audit row's endpoint ("chat.completions")
    timeout_key: ClassVar[str]  # its entry in MLXHUB_ENDPOINT_TIMEOUTS
    serves: ClassVar[str]  # which model kinds answer it (engine_requests.SERVES)

    def __init__(self, payload: P) -> None:
        self.payload = payload

    @property
    @abstractmethod
    def model(self) -> str: ...

    @property
    def streamed(self) -> bool:
        return bool(getattr(self.payload, "stream", False))

    # ---- local --------------------------------------------------------------------------------

    @abstractmethod
    def engine_request(self, profile: Profile, serving: Serving) -> EngineRequest: ...

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        """(url, param) of the images to fetch for the engine, after the reservation."""
        return []

    def renderer(self) -> Renderer:
        raise NotImplementedError(f"{type(self).__name__} renders no generation")

    async def local(self, serving: Serving, profile: Profile) -> HttpResponseBase:
        """A generation on a local model: admitted, then streamed or collected and rendered."""
        stream, accepted = await admit(self, serving, profile)
        renderer = self.renderer()
        if self.streamed:
            return event_stream_response(LocalStream(serving, stream, renderer, accepted))
        events = await collect(serving, stream)
        finish = events[-1]
        assert finish["type"] == "finish"
        body = renderer.body(events)
        serving.ledger.record(Outcome(200), finish)
        return JsonResponse(body)

    # ---- cloud --------------------------------------------------------------------------------

    @abstractmethod
    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        """Serve from the target's upstream; raise UpstreamError before anything is sent to fall through."""


async def serve(request: HttpRequest, endpoint: Endpoint[Any]) -> HttpResponseBase:
    """Serve ``endpoint`` for the authenticated caller; the ledger is closed whatever happens."""
    caller: Caller = request.auth  # type: ignore[attr-defined]
    ledger = RequestLedger(
        caller=caller,
        request_id=getattr(request, "request_id", "-"),
        endpoint=endpoint.name,
        model=endpoint.model,
        streamed=endpoint.streamed,
    )
    timeout = settings.MLXHUB_ENDPOINT_TIMEOUTS.get(endpoint.timeout_key, settings.MLXHUB_REQUEST_TIMEOUT)
    try:
        if not caller.allows_model(endpoint.model):  # the name the client asked for, whatever the route
            raise model_not_found(endpoint.model)
        route = await routing_rule_aresolve(model_name=endpoint.model)
        return await _serve_targets(Serving(request, ledger, timeout), endpoint, route)
    except OpenAIError as exc:
        ledger.record(Outcome(exc.status, exc.code or "error"))
        raise
    except asyncio.CancelledError:  # the client left while the view was still waiting
        ledger.record(CLIENT_LEFT)
        raise
    except BaseException:
        ledger.record(Outcome(500, "internal_error"))
        raise
    finally:
        if not ledger.streaming:  # a streamed body closes its own ledger when it ends
            ledger.close()


async def _serve_targets(serving: Serving, endpoint: Endpoint[Any], route: Route) -> HttpResponseBase:
    """Try the route's targets in order; fall through only while nothing has reached the client."""
    for position, target in enumerate(route.targets):
        serving.ledger.served_by(backend=target.backend, model=target.profile or target.model)
        try:
            if target.is_local:
                profile = await profile_for_model_name(name=target.profile)
                if profile is None:
                    raise model_not_found(route.model)
                response = await endpoint.local(serving, profile)
            else:
                response = await endpoint.cloud(serving, target)
            response[BACKEND_HEADER] = target.backend
            return response
        except UpstreamError as exc:
            error, falls = upstream_failure(exc), exc.retryable or isinstance(exc, CircuitOpenError)
        except OpenAIError as exc:
            error, falls = exc, exc.code in FALL_THROUGH_CODES
        if position == len(route.targets) - 1 or not falls:
            raise error
        logger.warning("falling through from %s for %s: %s", target.backend, route.model, error)
    raise AssertionError("unreachable: a route has at least one target")


# ---- the local engine ---------------------------------------------------------------------------


async def admit(endpoint: Endpoint[Any], serving: Serving, profile: Profile) -> tuple[RequestStream, AcceptedEvent]:
    """Reserve, fetch the images, submit, and wait for the engine to accept the request."""
    require_kind(profile, endpoint.serves)
    request = endpoint.engine_request(profile, serving)
    urls = endpoint.image_urls(profile)
    check_image_count(urls)
    # Before any image is fetched: a caller over its limits drives no outbound request.
    serving.ledger.reserve(local_cost(request, context_length=profile.effective_context_length(), images=len(urls)))
    if urls and isinstance(request, GenerationRequest):
        request.images = await fetch_images(urls)
    try:
        stream = engine_client().open(request)
    except EngineError as exc:
        raise engine_failure(exc) from exc
    try:
        event = await stream.next_event(serving.remaining())
    except BaseException:  # the client left while waiting for admission
        stream.cancel()
        raise
    if event is None:
        stream.cancel()
        raise OpenAIError("The request timed out before it started.", status=504, code="timeout")
    if event["type"] == "error":
        raise engine_failure(event)
    assert event["type"] == "accepted"
    serving.ledger.observe(event)
    return stream, event


async def collect(serving: Serving, stream: RequestStream) -> list[EngineEvent]:
    """Every event up to the terminal one (a finish or embeddings); an error or a timeout raises."""
    events: list[EngineEvent] = []
    try:
        while True:
            event = await stream.next_event(serving.remaining())
            if event is None:
                raise OpenAIError("The request timed out.", status=504, code="timeout")
            serving.ledger.observe(event)
            if event["type"] == "error":
                raise engine_failure(event)
            events.append(event)
            if event["type"] in ("finish", "embeddings"):
                return events
    except asyncio.CancelledError:
        serving.ledger.abandon(stream)
        raise
    finally:
        stream.cancel()  # no-op once finished; frees the slot when the client left or time ran out


def event_stream_response(body: AsyncIterator[bytes] | LedgeredBody) -> StreamingHttpResponse:
    """Server-sent events, never cached or buffered by a proxy on the way."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class LedgeredBody(ABC):
    """A streamed body that owns its request's ledger from the moment it exists.

    Its frames close the ledger when they end (finished, failed, or the client gone). If the server's
    handler never iterates it (the client left between the view's return and the first frame), the
    response's ``close`` (Django calls it from a worker thread) or the body's garbage collection
    ends the request instead, on the event loop.
    """

    def __init__(self, ledger: RequestLedger) -> None:
        ledger.streaming = True
        self.ledger = ledger
        self.loop = asyncio.get_running_loop()
        self.started = False
        self._released = threading.Event()

    def __aiter__(self) -> AsyncIterator[bytes]:
        # Not kept on self: a generator held here would make a cycle, and delay ``__del__`` to the cyclic GC.
        return self.frames()

    async def frames(self) -> AsyncIterator[bytes]:
        self.started = True
        async for frame in self.produce():
            if frame:
                yield frame

    @abstractmethod
    def produce(self) -> AsyncIterator[bytes]:
        """The frames; must close (or abandon) the ledger in its own ``finally``."""

    @abstractmethod
    def release_unstarted(self) -> None:
        """On the event loop: end a request whose body was never iterated."""

    def close(self) -> None:
        """Django's resource closer: a body that never ran still ends its request (from any thread)."""
        if self.started or self._released.is_set():
            return
        self._released.set()
        try:
            self.loop.call_soon_threadsafe(self.release_unstarted)
        except RuntimeError:  # the loop is closed: settle on what was seen, here
            self.ledger.record(CLIENT_LEFT)
            self.ledger.streaming = False
            self.ledger.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # a finalizer must never raise; the ledger logs its own failures
            self.close()


class LocalStream(LedgeredBody):
    """A local generation's SSE body: the renderer's frames for each engine event, heartbeats, the timeout."""

    def __init__(self, serving: Serving, stream: RequestStream, renderer: Renderer, accepted: AcceptedEvent) -> None:
        self.serving = serving
        self.stream = stream
        self.renderer = renderer
        self.accepted = accepted
        super().__init__(serving.ledger)

    async def produce(self) -> AsyncIterator[bytes]:
        ledger, renderer, stream = self.ledger, self.renderer, self.stream
        try:
            yield renderer.stream_start(self.accepted)
            while True:
                remaining = self.serving.remaining()
                if remaining <= 0:
                    ledger.record(Outcome(504, "timeout"))
                    yield renderer.stream_error(OpenAIError("The request timed out.", status=504, code="timeout"))
                    break
                event = await stream.next_event(min(settings.MLXHUB_HEARTBEAT_SECONDS, remaining))
                if event is None:
                    yield renderer.heartbeat()
                    continue
                ledger.observe(event)
                if event["type"] == "delta":
                    yield renderer.stream_delta_event(event)
                elif event["type"] == "reasoning":
                    yield renderer.stream_reasoning(event["text"], event.get("choice", 0))
                elif event["type"] == "choice_end":
                    yield renderer.stream_choice_end(event)
                elif event["type"] == "tool_call":
                    yield renderer.stream_tool_call(event)
                elif event["type"] == "tool_arguments":
                    yield renderer.stream_tool_arguments(event)
                elif event["type"] == "finish":
                    ledger.record(Outcome(200), event)
                    yield renderer.stream_finish(event)
                    break
                elif event["type"] == "error":
                    failure = engine_failure(event)
                    ledger.record(Outcome(failure.status, failure.code or "engine_error"))
                    yield renderer.stream_error(failure)
                    break
            yield renderer.stream_end()
        except (asyncio.CancelledError, GeneratorExit):
            ledger.abandon(stream)  # a client that disconnected leaves the batch at the next step
            raise
        finally:
            stream.cancel()
            ledger.close()  # a no-op while an abandoned request waits for the engine's last word

    def release_unstarted(self) -> None:
        self.ledger.abandon(self.stream)
