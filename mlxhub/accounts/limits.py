"""Usage limits that a burst cannot overshoot: reserve at admission, settle at the end.

A request reserves its maximum cost (prompt tokens + max_tokens) against every
scope that applies (its key, its team) in one atomic step; when it ends it
settles to what it really used. Windows are sliding (the last 60 s), so "10
requests a minute" admits exactly 10 in any minute, not 20 across a boundary.

Two stores with the same semantics: in-process (a lock) for the embedded
default, Redis (one Lua script per operation) when MLXHUB_REDIS_URL is set so
that every web process enforces one limit. No library offers reserve-then-
settle across several limits atomically (`limits` can hit but not refund), so
this is the small piece we own.
"""

from __future__ import annotations

import calendar
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mlxhub.accounts.models import ApiKey, BudgetPeriod, Team, UsageLimits

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


class LimitExceeded(Exception):
    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = max(1, retry_after)


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
    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float) -> None: ...

    def settle(
        self, scopes: list[ScopeLimits], reservation_id: str, reserved: int, actual: int, now: float
    ) -> None: ...

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]: ...


@dataclass
class _ScopeState:
    window: deque[tuple[float, str]] = field(default_factory=deque)  # (time, reservation id)
    costs: dict[str, int] = field(default_factory=dict)  # reservation id -> tokens, for entries in the window
    concurrent: int = 0
    budget_used: dict[str, int] = field(default_factory=dict)  # period id -> tokens


class MemoryLimitStore:
    """Per-process store; one lock makes check-and-reserve atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _ScopeState] = {}

    def _state(self, scope: str, now: float) -> _ScopeState:
        state = self._states.setdefault(scope, _ScopeState())
        while state.window and state.window[0][0] <= now - WINDOW_SECONDS:
            _, expired = state.window.popleft()
            state.costs.pop(expired, None)
        return state

    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float) -> None:
        with self._lock:
            states = [self._state(limits.scope, now) for limits in scopes]
            for limits, state in zip(scopes, states, strict=True):
                violation = _violation(
                    limits,
                    requests=len(state.window),
                    tokens=sum(state.costs.values()),
                    concurrent=state.concurrent,
                    budget_used=state.budget_used.get(period_bounds(limits.budget_period, now)[0], 0),
                    cost=cost,
                )
                if violation is not None:
                    name, used = violation
                    oldest = state.window[0][0] if state.window else now
                    raise _exceeded(limits, name, used, cost, _retry_after(limits, name, now, oldest))
            for limits, state in zip(scopes, states, strict=True):
                state.window.append((now, reservation_id))
                state.costs[reservation_id] = cost
                state.concurrent += 1
                period = period_bounds(limits.budget_period, now)[0]
                state.budget_used[period] = state.budget_used.get(period, 0) + cost

    def settle(self, scopes: list[ScopeLimits], reservation_id: str, reserved: int, actual: int, now: float) -> None:
        with self._lock:
            for limits in scopes:
                state = self._state(limits.scope, now)
                if reservation_id in state.costs:
                    state.costs[reservation_id] = actual
                state.concurrent = max(0, state.concurrent - 1)
                period = period_bounds(limits.budget_period, now)[0]
                state.budget_used[period] = max(0, state.budget_used.get(period, 0) + actual - reserved)

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]:
        with self._lock:
            state = self._state(scope.scope, now)
            return {
                "requests_in_window": len(state.window),
                "tokens_in_window": sum(state.costs.values()),
                "concurrent": state.concurrent,
                "budget_used": state.budget_used.get(period_bounds(scope.budget_period, now)[0], 0),
            }


def _violation(
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


def _exceeded(limits: ScopeLimits, name: str, used: int, cost: int, retry_after: int) -> LimitExceeded:
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


def _retry_after(limits: ScopeLimits, name: str, now: float, oldest: float) -> int:
    if name == "max_concurrent":
        return 1
    if name == "token_budget":
        return int(period_bounds(limits.budget_period, now)[1] - now) + 1
    return int(oldest + WINDOW_SECONDS - now) + 1


# One Lua script checks every scope, then reserves in all of them: atomic in Redis.
# KEYS per scope (4): window zset, costs hash, concurrent counter, budget counter.
# ARGV: now, reservation id, cost, window seconds, then per scope: rpm, tpm, max_concurrent, budget, budget ttl
# (-1 = unlimited). Returns {0} on success, or {index, limit, retry_after, used}.
_RESERVE_LUA = """
local now = tonumber(ARGV[1]); local rid = ARGV[2]; local cost = tonumber(ARGV[3]); local win = tonumber(ARGV[4])
local n = #KEYS / 4
local state = {}
for i = 1, n do
  local zkey, hkey, ckey, bkey = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', now - win)
  for _, member in ipairs(expired) do redis.call('HDEL', hkey, member) end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now - win)
  local requests = redis.call('ZCARD', zkey)
  local tokens = 0
  for _, value in ipairs(redis.call('HVALS', hkey)) do tokens = tokens + tonumber(value) end
  local concurrent = tonumber(redis.call('GET', ckey) or '0')
  local used = tonumber(redis.call('GET', bkey) or '0')
  local oldest = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  local oldest_at = now
  if #oldest > 0 then oldest_at = tonumber(oldest[2]) end
  local base = 4 + 5 * (i - 1)
  local rpm, tpm = tonumber(ARGV[base+1]), tonumber(ARGV[base+2])
  local maxc, budget = tonumber(ARGV[base+3]), tonumber(ARGV[base+4])
  local retry = math.floor(oldest_at + win - now) + 1
  if maxc >= 0 and concurrent + 1 > maxc then return {i, 'max_concurrent', 1, concurrent} end
  if rpm >= 0 and requests + 1 > rpm then return {i, 'rpm', retry, requests} end
  if tpm >= 0 and tokens + cost > tpm then return {i, 'tpm', retry, tokens} end
  if budget >= 0 and used + cost > budget then return {i, 'token_budget', tonumber(ARGV[base+5]), used} end
end
for i = 1, n do
  local zkey, hkey, ckey, bkey = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  redis.call('ZADD', zkey, now, rid); redis.call('EXPIRE', zkey, math.ceil(win) + 5)
  redis.call('HSET', hkey, rid, cost); redis.call('EXPIRE', hkey, math.ceil(win) + 5)
  redis.call('INCR', ckey); redis.call('EXPIRE', ckey, 86400)
  redis.call('INCRBY', bkey, cost); redis.call('EXPIRE', bkey, tonumber(ARGV[4 + 5 * (i - 1) + 5]) + 3600)
end
return {0}
"""

_SETTLE_LUA = """
local rid = ARGV[1]; local delta = tonumber(ARGV[2]); local actual = ARGV[3]
for i = 1, #KEYS / 4 do
  local hkey, ckey, bkey = KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  if redis.call('HEXISTS', hkey, rid) == 1 then redis.call('HSET', hkey, rid, actual) end
  if tonumber(redis.call('GET', ckey) or '0') > 0 then redis.call('DECR', ckey) end
  local used = redis.call('INCRBY', bkey, delta)
  if used < 0 then redis.call('SET', bkey, 0, 'KEEPTTL') end
end
return 1
"""


class RedisLimitStore:
    def __init__(self, url: str, prefix: str = "mlxhub:limits") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._settle = self._redis.register_script(_SETTLE_LUA)

    def _keys(self, limits: ScopeLimits, now: float) -> list[str]:
        period, _ = period_bounds(limits.budget_period, now)
        base = f"{self._prefix}:{limits.scope}"
        return [f"{base}:window", f"{base}:costs", f"{base}:concurrent", f"{base}:budget:{period}"]

    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float) -> None:
        keys: list[str] = []
        args: list[Any] = [now, reservation_id, cost, WINDOW_SECONDS]
        for limits in scopes:
            keys += self._keys(limits, now)
            _, ends = period_bounds(limits.budget_period, now)
            args += [
                -1 if limits.rpm is None else limits.rpm,
                -1 if limits.tpm is None else limits.tpm,
                -1 if limits.max_concurrent is None else limits.max_concurrent,
                -1 if limits.token_budget is None else limits.token_budget,
                int(ends - now) + 1,
            ]
        result = self._reserve(keys=keys, args=args)
        if int(result[0]) == 0:
            return
        limits = scopes[int(result[0]) - 1]
        name = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        raise _exceeded(limits, name, int(result[3]), cost, max(1, int(result[2])))

    def settle(self, scopes: list[ScopeLimits], reservation_id: str, reserved: int, actual: int, now: float) -> None:
        keys: list[str] = []
        for limits in scopes:
            keys += self._keys(limits, now)
        self._settle(keys=keys, args=[reservation_id, actual - reserved, actual])

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]:
        window, costs, concurrent, budget = self._keys(scope, now)
        self._redis.zremrangebyscore(window, "-inf", now - WINDOW_SECONDS)
        return {
            "requests_in_window": int(self._redis.zcard(window)),
            "tokens_in_window": sum(int(value) for value in self._redis.hvals(costs)),
            "concurrent": int(self._redis.get(concurrent) or 0),
            "budget_used": int(self._redis.get(budget) or 0),
        }


_store: LimitStore | None = None
_store_lock = threading.Lock()


def limit_store() -> LimitStore:
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                from django.conf import settings

                _store = RedisLimitStore(settings.MLXHUB_REDIS_URL) if settings.MLXHUB_REDIS_URL else MemoryLimitStore()
    return _store


def scope_of(owner: ApiKey | Team) -> ScopeLimits:
    if isinstance(owner, ApiKey):
        return ScopeLimits.of(f"key:{owner.pk}", f"API key {owner.prefix}…", owner)
    return ScopeLimits.of(f"team:{owner.pk}", f"team {owner.name}", owner)


def scopes_for(*, api_key: ApiKey | None, team: Team | None) -> list[ScopeLimits]:
    """The limits a request counts against: its key's (when it came with one) and its team's."""
    owners: list[ApiKey | Team] = [owner for owner in (api_key, team) if owner is not None]
    return [scope_of(owner) for owner in owners if owner.has_limits()]


@dataclass
class Reservation:
    """One request's hold on its limits; settle exactly once, whatever happens."""

    scopes: list[ScopeLimits]
    cost: int
    reservation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    settled: bool = False

    def settle(self, actual_tokens: int) -> None:
        if self.settled or not self.scopes:
            self.settled = True
            return
        self.settled = True
        limit_store().settle(self.scopes, self.reservation_id, self.cost, actual_tokens, time.time())


def usage_reserve(*, api_key: ApiKey | None, team: Team | None, cost: int) -> Reservation:
    """Reserve ``cost`` tokens and one request against the key's and team's limits, or raise LimitExceeded."""
    reservation = Reservation(scopes=scopes_for(api_key=api_key, team=team), cost=cost)
    if reservation.scopes:
        limit_store().reserve(reservation.scopes, reservation.reservation_id, cost, time.time())
    return reservation


def limits_usage(*, owner: ApiKey | Team) -> dict[str, int] | None:
    """What a key or team has used against its limits right now (None when it has none)."""
    if not owner.has_limits():
        return None
    return limit_store().usage(scope_of(owner), time.time())
