"""Async HTTP to OpenAI- and Anthropic-shaped upstreams: retries before the first byte, a breaker per upstream.

Retries: tenacity (``AsyncRetrying`` with exponential backoff and jitter). Each attempt
runs up to and including the first SSE event (or the whole body when not streaming),
so nothing has reached the client yet; once an ``UpstreamStream`` is handed to the
view, a failure ends the stream with an error event instead.

HTTP: aiohttp's pooled client session, one per event loop, its connections kept alive. It replaced httpx
here because the relay is on every routed request's path: on this project's 2-core machine a small POST
round trip cost about 0.5-0.9 ms through aiohttp against 1.2-2.1 ms through httpx's AsyncClient (1,500
interleaved pairs to the same local server).

Circuit breaking: a small ``CircuitBreaker`` here rather than a library. pybreaker's
async support is Tornado-only, aiobreaker has had no release since 2019 and wraps
whole calls, purgatory wraps whole calls too; here a failure counts only before the
first byte, and the fallback loop asks "is this upstream open?" without calling it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from django.conf import settings
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from routing.constants import ANTHROPIC_VERSION, UPSTREAM_CONNECT_TIMEOUT
from routing.selectors import CredentialTarget
from routing.services import credential_secret
from routing.translation.errors import upstream_error_message

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class UpstreamError(Exception):
    """An upstream failed or refused; ``retryable`` failures may be retried and fall through to a fallback."""

    def __init__(
        self, message: str, *, status: int, code: str | None = None, param: str | None = None, retryable: bool
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.retryable = retryable


class CircuitOpenError(UpstreamError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"The upstream '{name}' is failing; requests to it are paused.",
            status=503,
            code="upstream_unavailable",
            retryable=False,
        )


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → after ``pause`` one probe (half-open) →
    closed on its success, open again on its failure."""

    def __init__(self, *, failures: int, pause: float) -> None:
        self.threshold = failures
        self.pause = pause
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.pause else "open"

    def allow(self) -> bool:
        with self._lock:
            if self.opened_at is None:
                return True
            if self.probing or time.monotonic() - self.opened_at < self.pause:
                return False
            self.probing = True  # exactly one request probes; the others still fall through
            return True

    def record_success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.probing = 0, None, False

    def release_probe(self) -> None:
        """The probe ended without a verdict (its client left): let the next request probe."""
        with self._lock:
            self.probing = False

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.probing or self.failures >= self.threshold:
                if self.opened_at is None or self.probing:
                    logger.warning("circuit opened after %s failures", self.failures)
                self.opened_at, self.probing = time.monotonic(), False


_breakers: dict[tuple[int, str], CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(credential: CredentialTarget) -> CircuitBreaker:
    key = (credential.id, credential.base_url)
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = CircuitBreaker(
                failures=settings.MLXHUB_ROUTING_BREAKER_FAILURES, pause=settings.MLXHUB_ROUTING_BREAKER_PAUSE_SECONDS
            )
        return breaker


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()
# What counts as the upstream failing (not the request): a refused or dropped connection, a timeout.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def _client() -> aiohttp.ClientSession:
    # One pooled session per event loop (daphne has one; tests may run several).
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.closed:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=UPSTREAM_CONNECT_TIMEOUT, sock_read=settings.MLXHUB_ROUTING_READ_TIMEOUT
        )
        client = _clients[loop] = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=0),  # no cap here: the limits store bounds concurrency
            trust_env=False,  # its proxy and netrc look-ups run in a worker thread per request: _proxy instead
        )
    return client


@functools.lru_cache(maxsize=256)
def _headers(credential: CredentialTarget) -> tuple[tuple[str, str], ...]:
    """The upstream's auth headers, decrypted once per credential snapshot (a Fernet decrypt costs more
    than the rest of the request's set-up); a changed secret is a new snapshot, so a new entry."""
    secret = credential_secret(credential)
    if credential.speaks_anthropic:
        return (("x-api-key", secret), ("anthropic-version", ANTHROPIC_VERSION))
    return (("Authorization", f"Bearer {secret}"),)


@functools.lru_cache(maxsize=256)
def _proxy(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as httpx read it,
    looked up once per upstream instead of on every request."""
    parts = urllib.parse.urlsplit(base_url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _url(credential: CredentialTarget, path: str) -> str:
    return f"{credential.base_url}/v1{path}" if credential.speaks_anthropic else f"{credential.base_url}{path}"


async def _sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) per server-sent event; lines of any length (a Responses ``response.completed``
    event carries the whole answer), split here rather than by the reader's bounded ``readline``."""
    event, data = "", list[str]()
    partial: list[bytes] = []  # a line's pieces so far: each chunk is scanned once, however long the line
    async for chunk in response.content.iter_any():
        *lines, rest = chunk.split(b"\n")
        if lines and partial:
            lines[0], partial = b"".join([*partial, lines[0]]), []
        if rest:
            partial.append(rest)
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                if data:
                    yield event or "message", "\n".join(data)
                event, data = "", list[str]()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    last = b"".join(partial).strip()  # a last line without its newline
    if last.startswith(b"data:"):
        data.append(last[5:].decode().lstrip())
    if data:
        yield event or "message", "\n".join(data)


@dataclass
class UpstreamStream:
    """An upstream SSE stream whose first event has arrived: (event name, parsed data) pairs.
    ``data`` is None for OpenAI's ``[DONE]``."""

    response: aiohttp.ClientResponse
    first: tuple[str, dict[str, Any] | None]
    rest: AsyncIterator[tuple[str, str]]
    breaker: CircuitBreaker
    closed: bool = field(default=False)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        try:
            yield self.first
            async for event, data in self.rest:
                yield event, _parse_data(data)
        except (*TRANSPORT_ERRORS, ValueError) as exc:  # a dropped connection, a torn event
            self.breaker.record_failure()
            raise UpstreamError(
                f"The upstream connection failed mid-stream: {type(exc).__name__}.",
                status=502,
                code="upstream_error",
                retryable=False,
            ) from exc
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            _close(self.response)


def _parse_data(data: str) -> dict[str, Any] | None:
    if data.strip() == "[DONE]":
        return None
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else {"value": parsed}


# The upstream refused MLX Hub's own credential: the client's key is fine, so not a 401/403 to the client, and
# the upstream's body is not relayed (OpenAI's names the tail of the key it was sent).
UPSTREAM_AUTH_STATUSES = frozenset({401, 403})


def _close(response: aiohttp.ClientResponse) -> None:
    """A body read to its end goes back to the pool; one left mid-way drops its connection."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


async def _failure(response: aiohttp.ClientResponse, name: str) -> UpstreamError:
    if response.status in UPSTREAM_AUTH_STATUSES:
        return UpstreamError(
            f"The upstream '{name}' refused MLX Hub's credential for it (HTTP {response.status}); "
            "an admin needs to check that credential.",
            status=502,
            code="upstream_auth_error",
            retryable=False,
        )
    try:
        body = json.loads(await response.read())
    except ValueError:
        body = None
    message, code, param = upstream_error_message(body)
    return UpstreamError(
        message,
        status=response.status,
        code=code,
        param=param,
        retryable=response.status in RETRYABLE_STATUSES,
    )


async def _attempt(
    credential: CredentialTarget, body: dict[str, Any], *, path: str, stream: bool
) -> dict[str, Any] | UpstreamStream:
    breaker = breaker_for(credential)
    if not breaker.allow():
        raise CircuitOpenError(credential.name)
    response: aiohttp.ClientResponse | None = None
    try:
        response = await _client().post(
            _url(credential, path),
            data=json.dumps(body).encode(),
            headers={**dict(_headers(credential)), "Content-Type": "application/json"},
            allow_redirects=False,
            proxy=_proxy(credential.base_url),
        )
        if response.status >= 400:
            error = await _failure(response, credential.name)
            _close(response)
            if error.retryable:
                breaker.record_failure()
            else:
                breaker.record_success()  # the upstream answered; the request was at fault
            raise error
        if not stream:
            payload = json.loads(await response.read())
            _close(response)
            breaker.record_success()
            return payload if isinstance(payload, dict) else {}
        rest = _sse_events(response)
        event, data = await anext(rest)  # the first event: until here a retry is still invisible
        breaker.record_success()
        return UpstreamStream(response=response, first=(event, _parse_data(data)), rest=rest, breaker=breaker)
    except (*TRANSPORT_ERRORS, StopAsyncIteration, ValueError) as exc:
        if response is not None:
            response.close()
        breaker.record_failure()
        raise UpstreamError(
            f"The upstream '{credential.name}' failed: {type(exc).__name__}.",
            status=502,
            code="upstream_error",
            retryable=True,
        ) from exc
    except BaseException:  # cancelled, or a secret that no longer decrypts: no verdict on the upstream
        breaker.release_probe()
        if response is not None:
            response.close()
        raise


async def upstream_call(
    credential: CredentialTarget, body: dict[str, Any], *, path: str, stream: bool
) -> dict[str, Any] | UpstreamStream:
    """POST ``body`` to the upstream: the JSON answer, or a stream whose first event has arrived.

    The first attempt runs bare: building tenacity's retry state for every call was 2 % of the event
    loop's busy time under routed load. A retryable failure starts tenacity with that failure as its first
    attempt, so its stop and backoff count from there."""
    try:
        return await _attempt(credential, body, path=path, stream=stream)
    except UpstreamError as exc:
        if not exc.retryable:
            raise
        failure: UpstreamError | None = exc
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.MLXHUB_ROUTING_RETRY_ATTEMPTS),
        wait=wait_exponential_jitter(
            multiplier=settings.MLXHUB_ROUTING_RETRY_INITIAL_SECONDS, max=settings.MLXHUB_ROUTING_RETRY_MAX_SECONDS
        ),
        retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamError) and exc.retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if failure is not None:  # attempt 1: the bare one's failure
                error, failure = failure, None
                raise error
            logger.info("retrying upstream %s (attempt %s)", credential.name, attempt.retry_state.attempt_number)
            return await _attempt(credential, body, path=path, stream=stream)
    raise AssertionError("unreachable: tenacity reraises the last failure")


def relay_close(timeout: float = 2.0) -> None:
    """Close the pooled sessions and their kept-alive connections (at shutdown, from a thread other than
    their loops'): an open session at exit is logged as an error."""
    for loop, client in list(_clients.items()):
        if loop.is_closed() or client.closed:
            continue
        try:
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout)
        except Exception:  # a stuck loop: the process exits anyway
            logger.warning("could not close the upstream connections", exc_info=True)


def breakers_reset() -> None:
    with _breakers_lock:
        _breakers.clear()
