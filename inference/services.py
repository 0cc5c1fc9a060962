"""The request ledger: one /v1 request's bookkeeping, closed exactly once whatever happens.

At admission the request reserves its maximum cost against its key's and team's limits;
when it ends (answered, refused, failed, timed out, or abandoned by its client) the
reservation settles to real usage, the metrics move and the audit row is queued. Only
the serving module (``inference.serving``) opens and closes a ledger; ``close`` is safe
to call from any thread and any number of times (a dropped response is closed from a
worker thread), and it acts once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass

from audit.services import RequestAudit, request_audit_write
from inference.engine.client import RequestStream
from inference.engine.types import EngineEvent, FinishEvent, finish_event
from inference.errors import OpenAIError
from inference.metrics import request_observe
from mlxhub.accounts.callers import Caller
from mlxhub.accounts.limits import LimitExceeded, Reservation, usage_reserve

logger = logging.getLogger(__name__)

# How long an abandoned request waits for the engine's word on what it produced.
ABANDON_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    status: int
    error_type: str = ""
    cancelled: bool = False


CLIENT_LEFT = Outcome(499, "client_disconnected", cancelled=True)
# A request the process stopped before it ended (a drain past its deadline, an engine that died).
SHUTTING_DOWN = Outcome(503, "shutting_down", cancelled=True)

# Every ledger not yet closed: a stopping process settles them all (``ledgers_close_open``).
_open_ledgers: weakref.WeakSet[RequestLedger] = weakref.WeakSet()
_open_lock = threading.Lock()


class RequestLedger:
    def __init__(self, *, caller: Caller, request_id: str, endpoint: str, model: str, streamed: bool) -> None:
        self.caller = caller
        self.audit = RequestAudit(
            request_id=request_id,
            endpoint=endpoint,
            model_requested=model[:200],
            user_id=caller.user.pk,
            team_id=caller.team.pk if caller.team is not None else None,
            key_prefix=caller.key_prefix,
            streamed=streamed,
        )
        self.reservation: Reservation | None = None
        # What the engine (or the upstream) reported so far: an abandoned request settles to these counts.
        self.seen: FinishEvent = finish_event("cancelled", prompt=0, completion=0)
        self.outcome = Outcome(500, "internal_error")  # until told otherwise
        self.finish: FinishEvent | None = None
        self.abandoning = False
        self.streaming = False  # a streamed body owns the close from when it exists (inference.serving)
        self.closed = False
        self._lock = threading.Lock()
        with _open_lock:
            _open_ledgers.add(self)

    # ---- while the request runs ---------------------------------------------------------------

    def served_by(self, *, backend: str, model: str) -> None:
        self.audit.backend = backend
        self.audit.model_served = model

    def reserve(self, cost: int) -> None:
        """Hold ``cost`` tokens and one request against every limit, or refuse with a 429 naming the limit."""
        if self.reservation is not None:  # a fallback attempt: the first target's reservation stands
            return
        try:
            self.reservation = usage_reserve(api_key=self.caller.api_key, team=self.caller.team, cost=cost)
        except LimitExceeded as exc:
            raise OpenAIError(
                str(exc),
                status=429,
                code="rate_limit_exceeded",
                param=exc.limit,
                headers={"Retry-After": str(exc.retry_after)},
            ) from exc

    def observe(self, event: EngineEvent) -> None:
        """Track what the engine has reported, so an abandoned request still settles to real counts."""
        if event["type"] == "accepted":
            self.seen["prompt_tokens"] = event["prompt_tokens"]
            self.seen["cached_tokens"] = event["cached_tokens"]
        elif event["type"] in ("delta", "reasoning"):
            self.seen["completion_tokens"] = event["tokens"]
            self.audit.mark_first_token()
        elif event["type"] == "tool_call" or (event["type"] == "finish" and event["text"]):
            self.audit.mark_first_token()

    def record(self, outcome: Outcome, finish: FinishEvent | None = None) -> None:
        """How the request ended, for ``close`` to settle and audit (the last word wins)."""
        self.outcome = outcome
        if finish is not None:
            self.finish = finish

    def abandon(self, stream: RequestStream) -> None:
        """The client left: cancel in the engine, and close when the engine says what it produced."""
        if self.closed or self.abandoning:
            return
        self.abandoning = True
        self.record(CLIENT_LEFT)

        def ended(event: EngineEvent) -> None:
            if event["type"] == "finish":
                self.finish = event
            self._close()

        stream.on_terminal = ended
        stream.cancel()
        # Should the engine never answer (it always does), close on what was seen.
        asyncio.get_running_loop().call_later(ABANDON_GRACE_SECONDS, self._close)

    # ---- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        """Settle, measure and audit, once; while an abandoned request waits for the engine, nothing."""
        if not self.abandoning:
            self._close()

    def refuse(self, outcome: Outcome) -> None:
        """A request refused before it was served (a body that does not validate): its row, no reservation."""
        self.record(outcome)
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        with _open_lock:
            _open_ledgers.discard(self)
        audit, outcome = self.audit, self.outcome
        audit.status_code = outcome.status
        audit.error_type = outcome.error_type
        counts = self.finish if self.finish is not None else self.seen
        audit.cancelled = outcome.cancelled or (self.finish is not None and self.finish["finish_reason"] == "cancelled")
        audit.prompt_tokens = counts["prompt_tokens"]
        audit.completion_tokens = counts["completion_tokens"]
        audit.cached_tokens = counts["cached_tokens"]
        if self.reservation is not None:
            try:
                self.reservation.settle(audit.prompt_tokens + audit.completion_tokens)
            except Exception:  # a store outage must not lose the audit row or fail a finished response
                logger.exception("could not settle the usage reservation")
        ttft = None if audit.first_token_at is None else audit.first_token_at - audit.started
        request_observe(
            endpoint=audit.endpoint,
            # The served name, never the client's free text: every label value is a new series.
            model=audit.model_served or "unknown",
            backend=audit.backend,
            status=outcome.status,
            prompt_tokens=audit.prompt_tokens,
            completion_tokens=audit.completion_tokens,
            latency=time.monotonic() - audit.started,
            ttft=ttft,
        )
        try:
            request_audit_write(audit=audit)
        except Exception:  # the response is already decided; never fail it over bookkeeping
            logger.exception("could not queue the audit row")


def ledgers_close_open() -> int:
    """Close every ledger still open (a stopping process): each settles its reservation and queues its row."""
    with _open_lock:
        ledgers = list(_open_ledgers)
    for ledger in ledgers:
        if ledger.finish is None:
            ledger.record(SHUTTING_DOWN)
        ledger._close()
    return len(ledgers)


def engine_start() -> None:
    """Start this process's engine and load the pinned profiles, in the background (called at boot)."""
    from catalog.models import Profile
    from inference.engine.types import EngineError
    from inference.engine_requests import model_spec_for
    from inference.runtime import engine_client

    client = engine_client()
    try:
        specs = [
            model_spec_for(profile)
            for profile in Profile.objects.select_related("local_model").filter(enabled=True, pinned=True)
        ]
    except Exception:  # no tables yet (before migrate): nothing to preload
        logger.warning("could not read profiles to preload", exc_info=True)
        specs = []

    async def warm_up() -> None:
        await client.start()
        for spec in specs:
            try:
                await client.preload(spec)
            except EngineError as exc:  # the pool says why; the profile stays unloaded until asked for
                logger.warning("could not preload a pinned model: %s", exc)

    threading.Thread(target=asyncio.run, args=(warm_up(),), name="engine-warm-up", daemon=True).start()
