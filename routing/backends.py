"""Async HTTP to OpenAI- and Anthropic-shaped upstreams: retries before the first byte, a breaker per upstream.

Retries: tenacity (``AsyncRetrying`` with exponential backoff and jitter). Each attempt
runs up to and including the first SSE event (or the whole body when not streaming),
so nothing has reached the client yet; once an ``UpstreamStream`` is handed to the
view, a failure ends the stream with an error event instead.

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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
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


_clients: dict[int, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    # One pooled client per event loop (daphne has one; tests may run several).
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        timeout = httpx.Timeout(settings.MLXHUB_ROUTING_READ_TIMEOUT, connect=UPSTREAM_CONNECT_TIMEOUT)
        client = _clients[id(loop)] = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    return client


@functools.lru_cache(maxsize=256)
def _headers(credential: CredentialTarget) -> tuple[tuple[str, str], ...]:
    """The upstream's auth headers, decrypted once per credential snapshot (a Fernet decrypt costs more
    than the rest of the request's set-up); a changed secret is a new snapshot, so a new entry."""
    secret = credential_secret(credential)
    if credential.speaks_anthropic:
        return (("x-api-key", secret), ("anthropic-version", ANTHROPIC_VERSION))
    return (("Authorization", f"Bearer {secret}"),)


def _request(credential: CredentialTarget, body: dict[str, Any], *, path: str) -> httpx.Request:
    headers = dict(_headers(credential))
    url = f"{credential.base_url}/v1{path}" if credential.speaks_anthropic else f"{credential.base_url}{path}"
    return _client().build_request("POST", url, json=body, headers=headers)


async def _sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    event, data = "", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event or "message", "\n".join(data)


@dataclass
class UpstreamStream:
    """An upstream SSE stream whose first event has arrived: (event name, parsed data) pairs.
    ``data`` is None for OpenAI's ``[DONE]``."""

    response: httpx.Response
    first: tuple[str, dict[str, Any] | None]
    rest: AsyncIterator[tuple[str, str]]
    breaker: CircuitBreaker
    closed: bool = field(default=False)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        try:
            yield self.first
            async for event, data in self.rest:
                yield event, _parse_data(data)
        except (httpx.HTTPError, ValueError) as exc:  # a dropped connection, a torn event
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
            await self.response.aclose()


def _parse_data(data: str) -> dict[str, Any] | None:
    if data.strip() == "[DONE]":
        return None
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else {"value": parsed}


# The upstream refused MLX Hub's own credential: the client's key is fine, so not a 401/403 to the client, and
# the upstream's body is not relayed (OpenAI's names the tail of the key it was sent).
UPSTREAM_AUTH_STATUSES = frozenset({401, 403})


async def _failure(response: httpx.Response, name: str) -> UpstreamError:
    if response.status_code in UPSTREAM_AUTH_STATUSES:
        return UpstreamError(
            f"The upstream '{name}' refused MLX Hub's credential for it (HTTP {response.status_code}); "
            "an admin needs to check that credential.",
            status=502,
            code="upstream_auth_error",
            retryable=False,
        )
    try:
        body = json.loads(await response.aread())
    except ValueError:
        body = None
    message, code, param = upstream_error_message(body)
    return UpstreamError(
        message,
        status=response.status_code,
        code=code,
        param=param,
        retryable=response.status_code in RETRYABLE_STATUSES,
    )


async def _attempt(
    credential: CredentialTarget, body: dict[str, Any], *, path: str, stream: bool
) -> dict[str, Any] | UpstreamStream:
    breaker = breaker_for(credential)
    if not breaker.allow():
        raise CircuitOpenError(credential.name)
    response: httpx.Response | None = None
    try:
        response = await _client().send(_request(credential, body, path=path), stream=True)
        if response.status_code >= 400:
            error = await _failure(response, credential.name)
            await response.aclose()
            if error.retryable:
                breaker.record_failure()
            else:
                breaker.record_success()  # the upstream answered; the request was at fault
            raise error
        if not stream:
            payload = json.loads(await response.aread())
            await response.aclose()
            breaker.record_success()
            return payload if isinstance(payload, dict) else {}
        rest = _sse_events(response)
        event, data = await anext(rest)  # the first event: until here a retry is still invisible
        breaker.record_success()
        return UpstreamStream(response=response, first=(event, _parse_data(data)), rest=rest, breaker=breaker)
    except (httpx.HTTPError, StopAsyncIteration, ValueError) as exc:
        if response is not None:
            await response.aclose()
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
            await response.aclose()
        raise


async def upstream_call(
    credential: CredentialTarget, body: dict[str, Any], *, path: str, stream: bool
) -> dict[str, Any] | UpstreamStream:
    """POST ``body`` to the upstream: the JSON answer, or a stream whose first event has arrived."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.MLXHUB_ROUTING_RETRY_ATTEMPTS),
        wait=wait_exponential_jitter(
            initial=settings.MLXHUB_ROUTING_RETRY_INITIAL_SECONDS, max=settings.MLXHUB_ROUTING_RETRY_MAX_SECONDS
        ),
        retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamError) and exc.retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                logger.info("retrying upstream %s (attempt %s)", credential.name, attempt.retry_state.attempt_number)
            return await _attempt(credential, body, path=path, stream=stream)
    raise AssertionError("unreachable: tenacity reraises the last failure")


def breakers_reset() -> None:
    with _breakers_lock:
        _breakers.clear()
