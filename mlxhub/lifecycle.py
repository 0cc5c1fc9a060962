"""The web process's lifecycle: serving, draining after SIGTERM, or stopping because its engine died.

``Admission`` (ASGI, outermost in ``mlxhub.asgi``) counts the HTTP requests in flight and, once the
process stops admitting, answers new ``/v1`` requests 503 with ``Retry-After`` in the protocol's error
shape; ``/readyz`` answers 503 from the same state (``mlxhub.health``).

- A drain (``drain_start``, from the server's SIGTERM/SIGINT handler in ``mlxhub.web``) lets the requests
  in flight finish for up to ``MLXHUB_DRAIN_SECONDS``, then settles every open request ledger, flushes
  the audit and budget writers and stops the server: exit 0.
- An engine that dies (``engine_died``, called from its thread) fails its requests itself; the process
  waits up to ``ENGINE_DEATH_GRACE_SECONDS`` for their error answers to go out, settles and flushes the
  same way, and exits ``ENGINE_DIED_EXIT_CODE`` so ``manage.py serve`` (or a supervisor) restarts it.

The work runs on a plain thread: it only waits, reads a counter and calls the writers' ``flush``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# EX_SOFTWARE: the process stopped because its engine thread died; `manage.py serve` restarts it.
ENGINE_DIED_EXIT_CODE = 70
ENGINE_DEATH_GRACE_SECONDS = 2.0
# A stop that takes longer than this after the server was told to stop is cut short.
STOP_GRACE_SECONDS = 10.0
RETRY_AFTER_SECONDS = 5
POLL_SECONDS = 0.05

_state: str | None = None  # None while serving; "draining" or "engine_died"
_lock = threading.Lock()
_in_flight = 0  # HTTP requests inside the application (changed on the server's event loop only)
_stopper: Callable[[int], None] | None = None
exit_code = 0

REFUSALS = {
    "draining": ("shutting_down", "The server is shutting down; retry on another instance or shortly."),
    "engine_died": ("engine_unavailable", "The engine stopped; the server is restarting. Retry shortly."),
}


def state() -> str | None:
    return _state


def refusal() -> tuple[str, str] | None:
    """(code, message) for a refused request while the process does not admit, else None."""
    return REFUSALS.get(_state) if _state is not None else None


def in_flight() -> int:
    return _in_flight


def serve_with(stopper: Callable[[int], None]) -> None:
    """The server registers how to stop it with an exit code (``mlxhub.web``); without one the process
    ends with ``os._exit`` once its bookkeeping is written."""
    global _stopper
    _stopper = stopper


def _refusal_response(path: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    code, message = refusal() or REFUSALS["draining"]
    if path.startswith("/v1/messages"):
        from routing.translation.errors import anthropic_error_body

        body: dict[str, Any] = anthropic_error_body(status=503, message=message)
    else:
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
        (b"connection", b"close"),
    ]
    return raw, headers


class Admission:
    """ASGI: counts HTTP requests in flight; refuses new /v1 requests while the process does not admit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        global _in_flight
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if _state is not None and path.startswith("/v1/"):
            body, headers = _refusal_response(path)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        _in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            _in_flight -= 1


def _begin(new_state: str) -> bool:
    global _state
    with _lock:
        if _state is not None:
            return False
        _state = new_state
        return True


def drain_start(seconds: float) -> bool:
    """Stop admitting, let the requests in flight finish for up to ``seconds``, then stop with exit 0.
    False when the process was already stopping (a second signal: the caller stops at once)."""
    if not _begin("draining"):
        return False
    logger.warning("draining: %d request(s) in flight, up to %.0f s", _in_flight, seconds)
    threading.Thread(target=_stop_after, args=(seconds, 0), name="drain", daemon=True).start()
    return True


def engine_died(error: BaseException) -> None:
    """The engine's thread died (it has failed its own requests): stop admitting and exit non-zero."""
    if not _begin("engine_died"):
        return
    logger.critical("the engine thread died (%s: %s); stopping the process", type(error).__name__, error)
    args = (ENGINE_DEATH_GRACE_SECONDS, ENGINE_DIED_EXIT_CODE)
    threading.Thread(target=_stop_after, args=args, name="engine-died", daemon=True).start()


def _stop_after(seconds: float, code: int) -> None:
    global exit_code
    started = time.monotonic()
    deadline = started + seconds
    while _in_flight > 0 and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if _in_flight:
        logger.warning("stopping with %d request(s) still in flight", _in_flight)
    write_bookkeeping()
    logger.warning("stopped admitting %.2f s ago; exiting with %d", time.monotonic() - started, code)
    exit_code = code
    if _stopper is None:
        os._exit(code)  # a server that registered no stopper (plain daphne): nothing else would end it
    _stopper(code)
    time.sleep(STOP_GRACE_SECONDS)
    logger.error("the server did not stop within %.0f s; exiting", STOP_GRACE_SECONDS)
    os._exit(code)


def write_bookkeeping() -> None:
    """Settle every request still open (its reservation, metrics and audit row), write what the audit and
    budget writers hold, and close the relay's connections to upstreams."""
    from audit.services import audit_writer
    from inference.services import ledgers_close_open
    from mlxhub.accounts.budgets import budget_writer

    try:
        closed = ledgers_close_open()
        if closed:
            logger.warning("closed %d request ledger(s) that were still open", closed)
    except Exception:
        logger.exception("could not close the open request ledgers")
    if not audit_writer.flush(timeout=STOP_GRACE_SECONDS):
        logger.error("the audit writer did not finish in %.0f s", STOP_GRACE_SECONDS)
    if not budget_writer.flush(timeout=STOP_GRACE_SECONDS):
        logger.error("the budget writer did not finish in %.0f s", STOP_GRACE_SECONDS)
    from routing.backends import relay_close

    relay_close()
