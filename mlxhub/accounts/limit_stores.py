"""The fast path of usage limits: what one store (a lock in-process, or Redis) must do, and the in-process store.

Every scope ("key:12", "team:3") keeps
- a sliding 60 s window of reservations (requests per minute) and their costs (tokens per minute);
- the requests in flight, each with its own deadline (the request timeout): a reservation whose settle never
  comes (a crash, a lost message) frees its slot when its deadline passes, instead of holding it for good;
- its budget period's usage: the **settled** tokens (the database's count, seeded once per process and period,
  plus what settled since) and the holds of the reservations still in flight in that period.

A reservation settles against the period it was made in, whenever its settle comes.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from mlxhub.accounts.constants import BUDGET_ACTIVE_SECONDS
from mlxhub.accounts.models import BudgetPeriod, UsageLimits

WINDOW_SECONDS = 60.0
PERIOD_ADJECTIVE: dict[str, str] = {BudgetPeriod.DAY: "daily", BudgetPeriod.MONTH: "monthly"}


@dataclass(frozen=True)
class ScopeLimits:
    scope: str  # "key:12", "team:3"
    label: str  # how the 429 names it
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    token_budget: int | None
    budget_period: str

    @classmethod
    def of(cls, scope: str, label: str, owner: UsageLimits) -> ScopeLimits:
        return cls(scope, label, owner.rpm, owner.tpm, owner.max_concurrent, owner.token_budget, owner.budget_period)

    def period(self, now: float) -> str:
        return period_bounds(self.budget_period, now)[0]


class LimitExceeded(Exception):
    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = max(1, retry_after)


class Unseeded(Exception):
    """The store holds no settled count for these scopes' current period: read it from the database first."""

    def __init__(self, scopes: list[ScopeLimits]) -> None:
        super().__init__(", ".join(limits.scope for limits in scopes))
        self.scopes = scopes


def period_bounds(period: str, now: float) -> tuple[str, float]:
    """The budget period's id and when it ends (UTC)."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    if period == BudgetPeriod.DAY:
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%d"), start.timestamp() + 86400
    days = calendar.monthrange(moment.year, moment.month)[1]
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y%m"), start.timestamp() + days * 86400


class LimitStore(Protocol):
    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float, deadline: float) -> None:
        """Check every scope, then hold ``cost`` tokens and one request in each; raise LimitExceeded or Unseeded."""

    def settle(self, scopes: list[ScopeLimits], reservation_id: str, actual: int, reserved_at: float) -> None:
        """Release the reservation and count ``actual`` tokens in the period it was made in."""

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]: ...

    def seeded(self, scope: ScopeLimits, period: str) -> bool:
        """Whether the store holds the settled count of ``scope`` in ``period`` (a dictionary look-up)."""

    def seed(self, scope: ScopeLimits, period: str, tokens: int) -> None:
        """The database's settled count, for a scope the store does not hold yet."""

    def held(self) -> list[tuple[str, str]]:
        """The (scope, period) counts to read again from the database, where the store keeps its own."""

    def refresh(self, settled: dict[tuple[str, str], int]) -> None:
        """The database's counts read again (other processes' settles)."""

    def flushed(self, scope: str, period: str, tokens: int, total: int) -> None:
        """``tokens`` settled here are now in the database, whose count became ``total``."""


def violation(
    limits: ScopeLimits, *, requests: int, tokens: int, concurrent: int, budget_used: int, cost: int
) -> tuple[str, int] | None:
    """The first limit this reservation would break, with the usage it is measured against."""
    if limits.max_concurrent is not None and concurrent + 1 > limits.max_concurrent:
        return "max_concurrent", concurrent
    if limits.rpm is not None and requests + 1 > limits.rpm:
        return "rpm", requests
    if limits.tpm is not None and tokens + cost > limits.tpm:
        return "tpm", tokens
    if limits.token_budget is not None and budget_used + cost > limits.token_budget:
        return "token_budget", budget_used
    return None


def exceeded(limits: ScopeLimits, name: str, used: int, cost: int, retry_after: int) -> LimitExceeded:
    messages = {
        "max_concurrent": f"Too many concurrent requests for {limits.label} (limit {limits.max_concurrent}).",
        "rpm": f"Rate limit reached for {limits.label}: {limits.rpm} requests per minute.",
        "tpm": f"Rate limit reached for {limits.label}: {limits.tpm} tokens per minute "
        f"({used} used in the last minute, this request may use {cost}).",
        "token_budget": f"The {PERIOD_ADJECTIVE[limits.budget_period]} token budget of {limits.label} "
        f"({limits.token_budget} tokens) "
        f"would be exceeded: {used} used, this request may use {cost}.",
    }
    return LimitExceeded(messages[name], limit=name, retry_after=retry_after)


def retry_after(limits: ScopeLimits, name: str, now: float, oldest: float) -> int:
    if name == "max_concurrent":
        return 1
    if name == "token_budget":
        return int(period_bounds(limits.budget_period, now)[1] - now) + 1
    return int(oldest + WINDOW_SECONDS - now) + 1


@dataclass
class _InFlight:
    deadline: float
    cost: int
    period: str


@dataclass
class _ScopeState:
    window: deque[tuple[float, str]] = field(default_factory=deque)  # (time, reservation id)
    costs: dict[str, int] = field(default_factory=dict)  # reservation id -> tokens, for entries in the window
    in_flight: dict[str, _InFlight] = field(default_factory=dict)
    durable: dict[str, int] = field(default_factory=dict)  # period -> the database's count when last read
    pending: dict[str, int] = field(default_factory=dict)  # period -> settled here, not in the database yet
    last_used: float = 0.0

    def expire(self, now: float) -> None:
        while self.window and self.window[0][0] <= now - WINDOW_SECONDS:
            _, expired = self.window.popleft()
            self.costs.pop(expired, None)
        for reservation_id in [rid for rid, held in self.in_flight.items() if held.deadline <= now]:
            del self.in_flight[reservation_id]

    def budget_used(self, period: str) -> int:
        held = sum(hold.cost for hold in self.in_flight.values() if hold.period == period)
        return self.durable.get(period, 0) + self.pending.get(period, 0) + held


class MemoryLimitStore:
    """Per-process store; one lock makes check-and-reserve atomic. Several processes without Redis each keep
    their own windows and slots, and share the budget through the database (read again every few seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _ScopeState] = {}

    def _state(self, scope: str, now: float) -> _ScopeState:
        state = self._states.setdefault(scope, _ScopeState())
        state.expire(now)
        return state

    def seeded(self, scope: ScopeLimits, period: str) -> bool:
        state = self._states.get(scope.scope)
        return state is not None and period in state.durable

    def seed(self, scope: ScopeLimits, period: str, tokens: int) -> None:
        with self._lock:
            state = self._states.setdefault(scope.scope, _ScopeState())
            # Only where none is held: a count read before a flush finished must not overwrite a newer one.
            state.durable.setdefault(period, tokens)
            # Earlier periods of the same kind (a day id is longer than a month id) are done with.
            for old in [
                name
                for name in state.durable
                if len(name) == len(period) and name < period and not state.pending.get(name)
            ]:
                del state.durable[old]

    def held(self) -> list[tuple[str, str]]:
        active_since = time.time() - BUDGET_ACTIVE_SECONDS
        with self._lock:
            return [
                (scope, period)
                for scope, state in self._states.items()
                if state.last_used >= active_since
                for period in state.durable
            ]

    def refresh(self, settled: dict[tuple[str, str], int]) -> None:
        with self._lock:
            for (scope, period), tokens in settled.items():
                state = self._states.get(scope)
                if state is not None and period in state.durable:
                    state.durable[period] = tokens

    def flushed(self, scope: str, period: str, tokens: int, total: int) -> None:
        with self._lock:
            state = self._states.get(scope)
            if state is None:
                return
            state.pending[period] = max(0, state.pending.get(period, 0) - tokens)
            state.durable[period] = total

    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float, deadline: float) -> None:
        with self._lock:
            unseeded = [limits for limits in scopes if not self.seeded(limits, limits.period(now))]
            if unseeded:
                raise Unseeded(unseeded)
            states = [self._state(limits.scope, now) for limits in scopes]
            for limits, state in zip(scopes, states, strict=True):
                found = violation(
                    limits,
                    requests=len(state.window),
                    tokens=sum(state.costs.values()),
                    concurrent=len(state.in_flight),
                    budget_used=state.budget_used(limits.period(now)),
                    cost=cost,
                )
                if found is not None:
                    name, used = found
                    oldest = state.window[0][0] if state.window else now
                    raise exceeded(limits, name, used, cost, retry_after(limits, name, now, oldest))
            for limits, state in zip(scopes, states, strict=True):
                state.last_used = now
                state.window.append((now, reservation_id))
                state.costs[reservation_id] = cost
                state.in_flight[reservation_id] = _InFlight(deadline, cost, limits.period(now))

    def settle(self, scopes: list[ScopeLimits], reservation_id: str, actual: int, reserved_at: float) -> None:
        with self._lock:
            for limits in scopes:
                state = self._states.setdefault(limits.scope, _ScopeState())
                if reservation_id in state.costs:
                    state.costs[reservation_id] = actual
                state.in_flight.pop(reservation_id, None)
                period = limits.period(reserved_at)
                state.pending[period] = state.pending.get(period, 0) + actual

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]:
        with self._lock:
            state = self._state(scope.scope, now)
            return {
                "requests_in_window": len(state.window),
                "tokens_in_window": sum(state.costs.values()),
                "concurrent": len(state.in_flight),
                "budget_used": state.budget_used(scope.period(now)),
            }
