"""Usage limits that a burst cannot overshoot: reserve at admission, settle at the end.

A request reserves its maximum cost (prompt tokens + max_tokens) against every
scope that applies (its key, its team) in one atomic step; when it ends it
settles to what it really used. Windows are sliding (the last 60 s), so "10
requests a minute" admits exactly 10 in any minute, not 20 across a boundary.

Two fast stores with the same semantics (``limit_stores``): in-process (a lock)
for the embedded default, Redis (one Lua script per operation) when
MLXHUB_REDIS_URL is set so that every web process enforces one limit. The
database is the source of truth for budget usage (``budgets``): settled tokens
are written there in the background and read back on a process's first use of
a scope in a period, so a restart, a crash or a second web process without
Redis keeps the day's and the month's usage. No library offers reserve-then-
settle across several limits atomically (`limits` can hit but not refund), so
this is the small piece we own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from mlxhub.accounts.budgets import budget_writer, settled_tokens
from mlxhub.accounts.constants import RESERVATION_GRACE_SECONDS
from mlxhub.accounts.limit_stores import (
    LimitExceeded,
    LimitStore,
    MemoryLimitStore,
    ScopeLimits,
    Unseeded,
    period_bounds,
)
from mlxhub.accounts.models import ApiKey, Team

__all__ = [
    "LimitExceeded",
    "Reservation",
    "ScopeLimits",
    "limit_store",
    "limits_usage",
    "period_bounds",
    "scopes_for",
    "usage_prepare",
    "usage_reserve",
]

logger = logging.getLogger(__name__)

_store: LimitStore | None = None
_store_lock = threading.Lock()


def limit_store() -> LimitStore:
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                from django.conf import settings

                if settings.MLXHUB_REDIS_URL:
                    from mlxhub.accounts.limit_redis import RedisLimitStore

                    _store = RedisLimitStore(settings.MLXHUB_REDIS_URL)
                else:
                    _store = MemoryLimitStore()
                budget_writer.start()  # without Redis it also reads other processes' settles
    return _store


def scope_of(owner: ApiKey | Team) -> ScopeLimits:
    if isinstance(owner, ApiKey):
        return ScopeLimits.of(f"key:{owner.pk}", f"API key {owner.prefix}…", owner)
    return ScopeLimits.of(f"team:{owner.pk}", f"team {owner.name}", owner)


def scopes_for(*, api_key: ApiKey | None, team: Team | None) -> list[ScopeLimits]:
    """The limits a request counts against: its key's (when it came with one) and its team's."""
    owners: list[ApiKey | Team] = [owner for owner in (api_key, team) if owner is not None]
    return [scope_of(owner) for owner in owners if owner.has_limits()]


def reservation_timeout() -> float:
    """How long a reservation may wait for its settle: the longest request timeout, and a grace for the close."""
    from django.conf import settings

    longest = max([settings.MLXHUB_REQUEST_TIMEOUT, *settings.MLXHUB_ENDPOINT_TIMEOUTS.values()])
    return float(longest) + RESERVATION_GRACE_SECONDS


def _seed(store: LimitStore, scopes: list[ScopeLimits], now: float) -> None:
    """Read the scopes' settled counts of the current period from the database into the store (sync)."""
    periods = {limits.scope: limits.period(now) for limits in scopes}
    counts = settled_tokens(periods.items())
    for limits in scopes:
        store.seed(limits, periods[limits.scope], counts[(limits.scope, periods[limits.scope])])


def _unseeded(store: LimitStore, scopes: list[ScopeLimits], now: float) -> list[ScopeLimits]:
    return [limits for limits in scopes if not store.seeded(limits, limits.period(now))]


_seeder = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget-seed")


def _seed_here(store: LimitStore, scopes: list[ScopeLimits], now: float) -> None:
    """Seed from wherever we are: on an event loop's thread the ORM may not run, so on a helper thread.

    The data plane seeds in ``usage_prepare`` before it reserves; this blocking path is for what comes
    another way (Redis lost its counts mid-period, a caller that did not prepare)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _seed(store, scopes, now)
        return
    _seeder.submit(_seed, store, scopes, now).result(timeout=10)


async def usage_prepare(*, api_key: ApiKey | None, team: Team | None) -> None:
    """Read what the database says this key and team used in the current period, the first time this process
    needs it (a dictionary look-up afterwards): the reservation that follows then runs without the database."""
    store = limit_store()
    now = time.time()
    missing = _unseeded(store, scopes_for(api_key=api_key, team=team), now)
    if missing:
        await sync_to_async(_seed, thread_sensitive=False)(store, missing, now)


@dataclass
class Reservation:
    """One request's hold on its limits; settle exactly once, whatever happens."""

    scopes: list[ScopeLimits]
    cost: int
    reserved_at: float = field(default_factory=time.time)
    reservation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    settled: bool = False

    def settle(self, actual_tokens: int) -> None:
        """Count what the request really used, in the period it was reserved in; the database follows."""
        if self.settled or not self.scopes:
            self.settled = True
            return
        self.settled = True
        limit_store().settle(self.scopes, self.reservation_id, actual_tokens, self.reserved_at)
        if actual_tokens > 0:
            budget_writer.add(
                [(limits.scope, limits.period(self.reserved_at), actual_tokens) for limits in self.scopes]
            )


def usage_reserve(
    *, api_key: ApiKey | None, team: Team | None, cost: int, count: int = 1, timeout: float | None = None
) -> Reservation:
    """Reserve ``cost`` tokens ``count`` times (a cloud request for n choices) and one request against the key's
    and team's limits, or raise LimitExceeded. A reservation not settled within ``timeout`` seconds (default:
    the longest request timeout and a grace) frees its slot by itself."""
    reservation = Reservation(scopes=scopes_for(api_key=api_key, team=team), cost=cost * max(1, count))
    if not reservation.scopes:
        return reservation
    store = limit_store()
    now = reservation.reserved_at
    deadline = now + (timeout if timeout is not None else reservation_timeout())
    try:
        store.reserve(reservation.scopes, reservation.reservation_id, reservation.cost, now, deadline)
    except Unseeded as missing:
        try:
            _seed_here(store, missing.scopes, now)
        except Exception:  # no database now: the budget counts from zero here until the next read
            logger.warning("could not read budget usage; counting from zero", exc_info=True)
            for limits in missing.scopes:
                store.seed(limits, limits.period(now), 0)
        store.reserve(reservation.scopes, reservation.reservation_id, reservation.cost, now, deadline)
    return reservation


def limits_usage(*, owner: ApiKey | Team) -> dict[str, int] | None:
    """What a key or team has used against its limits right now (None when it has none)."""
    if not owner.has_limits():
        return None
    store, scope, now = limit_store(), scope_of(owner), time.time()
    if missing := _unseeded(store, [scope], now):
        _seed_here(store, missing, now)
    return store.usage(scope, now)
