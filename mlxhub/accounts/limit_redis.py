"""The limit store in Redis (MLXHUB_REDIS_URL): one Lua script per operation, so several web processes enforce
one limit atomically. Same semantics as ``MemoryLimitStore``; the settled budget count is the database's,
seeded into Redis when Redis does not hold it (first use, or Redis lost it) and counted on by every settle.
"""

from __future__ import annotations

import threading
from typing import Any

from mlxhub.accounts.limit_stores import (
    WINDOW_SECONDS,
    ScopeLimits,
    Unseeded,
    exceeded,
    period_bounds,
)
from mlxhub.accounts.models import BudgetPeriod

# How long a settled count outlives the start of its period (more than the longest period).
_BUDGET_TTL: dict[str, int] = {BudgetPeriod.DAY: 2 * 86400, BudgetPeriod.MONTH: 32 * 86400}

# KEYS per scope (5): window zset, costs hash, in-flight zset (reservation -> deadline), holds hash
# (reservation -> "period:cost"), settled budget count of the current period.
# ARGV: now, reservation id, cost, window seconds, deadline, then per scope: rpm, tpm, max_concurrent, budget,
# retry-after for the budget, period id (-1 = unlimited).
# Returns {0} on success, {-1, index...} for scopes whose settled count Redis does not hold,
# or {index, limit, retry_after, used}.
_RESERVE_LUA = """
local now = tonumber(ARGV[1]); local rid = ARGV[2]; local cost = tonumber(ARGV[3])
local win = tonumber(ARGV[4]); local deadline = tonumber(ARGV[5])
local n = #KEYS / 5
local missing = {-1}
for i = 1, n do
  if redis.call('EXISTS', KEYS[5*i]) == 0 then table.insert(missing, i) end
end
if #missing > 1 then return missing end
for i = 1, n do
  local zkey, hkey, fkey, okey, bkey = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i-2], KEYS[5*i-1], KEYS[5*i]
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', now - win)
  for _, member in ipairs(expired) do redis.call('HDEL', hkey, member) end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now - win)
  -- Reservations past their deadline: their settle is not coming (a crash, a lost message).
  local lost = redis.call('ZRANGEBYSCORE', fkey, '-inf', now)
  for _, member in ipairs(lost) do redis.call('HDEL', okey, member) end
  redis.call('ZREMRANGEBYSCORE', fkey, '-inf', now)
  local requests = redis.call('ZCARD', zkey)
  local tokens = 0
  for _, value in ipairs(redis.call('HVALS', hkey)) do tokens = tokens + tonumber(value) end
  local concurrent = redis.call('ZCARD', fkey)
  local base = 5 + 6 * (i - 1)
  local period = ARGV[base+6]
  local used = tonumber(redis.call('GET', bkey) or '0')
  for _, hold in ipairs(redis.call('HVALS', okey)) do
    local held_in, held = string.match(hold, '^(%d+):(%d+)$')
    if held_in == period then used = used + tonumber(held) end
  end
  local oldest = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  local oldest_at = now
  if #oldest > 0 then oldest_at = tonumber(oldest[2]) end
  local rpm, tpm = tonumber(ARGV[base+1]), tonumber(ARGV[base+2])
  local maxc, budget = tonumber(ARGV[base+3]), tonumber(ARGV[base+4])
  local retry = math.floor(oldest_at + win - now) + 1
  if maxc >= 0 and concurrent + 1 > maxc then return {i, 'max_concurrent', 1, concurrent} end
  if rpm >= 0 and requests + 1 > rpm then return {i, 'rpm', retry, requests} end
  if tpm >= 0 and tokens + cost > tpm then return {i, 'tpm', retry, tokens} end
  if budget >= 0 and used + cost > budget then return {i, 'token_budget', tonumber(ARGV[base+5]), used} end
end
local held_for = math.ceil(deadline - now) + 60
for i = 1, n do
  local zkey, hkey, fkey, okey = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i-2], KEYS[5*i-1]
  local period = ARGV[5 + 6 * (i - 1) + 6]
  redis.call('ZADD', zkey, now, rid); redis.call('EXPIRE', zkey, math.ceil(win) + 5)
  redis.call('HSET', hkey, rid, cost); redis.call('EXPIRE', hkey, math.ceil(win) + 5)
  -- The keys outlive the latest deadline; each member still ends at its own.
  redis.call('ZADD', fkey, deadline, rid); redis.call('HSET', okey, rid, period .. ':' .. cost)
  if redis.call('TTL', fkey) < held_for then redis.call('EXPIRE', fkey, held_for) end
  if redis.call('TTL', okey) < held_for then redis.call('EXPIRE', okey, held_for) end
end
return {0}
"""

# KEYS per scope (4): costs hash, in-flight zset, holds hash, settled count of the reservation's own period.
# ARGV: reservation id, actual tokens.
_SETTLE_LUA = """
local rid = ARGV[1]; local actual = tonumber(ARGV[2])
for i = 1, #KEYS / 4 do
  local hkey, fkey, okey, bkey = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  if redis.call('HEXISTS', hkey, rid) == 1 then redis.call('HSET', hkey, rid, actual) end
  redis.call('ZREM', fkey, rid); redis.call('HDEL', okey, rid)
  -- A count Redis lost is seeded again from the database, which this settle reaches as well.
  if redis.call('EXISTS', bkey) == 1 then redis.call('INCRBY', bkey, actual) end
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
        self._seeded: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def _base(self, limits: ScopeLimits) -> str:
        return f"{self._prefix}:{limits.scope}"

    def _budget_key(self, limits: ScopeLimits, period: str) -> str:
        return f"{self._base(limits)}:budget:{period}"

    def _keys(self, limits: ScopeLimits) -> list[str]:
        base = self._base(limits)
        return [f"{base}:window", f"{base}:costs", f"{base}:inflight", f"{base}:holds"]

    def seeded(self, scope: ScopeLimits, period: str) -> bool:
        return (scope.scope, period) in self._seeded

    def seed(self, scope: ScopeLimits, period: str, tokens: int) -> None:
        # NX: another process may have seeded it, and settled into it, since the database was read.
        self._redis.set(self._budget_key(scope, period), tokens, nx=True, ex=_BUDGET_TTL[scope.budget_period])
        with self._lock:
            self._seeded.add((scope.scope, period))

    def held(self) -> list[tuple[str, str]]:
        return []  # Redis holds every process's settles already: nothing to read again

    def refresh(self, settled: dict[tuple[str, str], int]) -> None:
        """Nothing to do (see ``held``)."""

    def flushed(self, scope: str, period: str, tokens: int, total: int) -> None:
        """Redis counted these tokens when they settled."""

    def reserve(self, scopes: list[ScopeLimits], reservation_id: str, cost: int, now: float, deadline: float) -> None:
        keys: list[str] = []
        args: list[Any] = [now, reservation_id, cost, WINDOW_SECONDS, deadline]
        for limits in scopes:
            period, ends = period_bounds(limits.budget_period, now)
            keys += [*self._keys(limits), self._budget_key(limits, period)]
            args += [
                -1 if limits.rpm is None else limits.rpm,
                -1 if limits.tpm is None else limits.tpm,
                -1 if limits.max_concurrent is None else limits.max_concurrent,
                -1 if limits.token_budget is None else limits.token_budget,
                int(ends - now) + 1,
                period,
            ]
        result = self._reserve(keys=keys, args=args)
        if int(result[0]) == 0:
            return
        if int(result[0]) == -1:
            missing = [scopes[int(index) - 1] for index in result[1:]]
            with self._lock:
                for limits in missing:
                    self._seeded.discard((limits.scope, limits.period(now)))
            raise Unseeded(missing)
        limits = scopes[int(result[0]) - 1]
        name = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        raise exceeded(limits, name, int(result[3]), cost, max(1, int(result[2])))

    def settle(self, scopes: list[ScopeLimits], reservation_id: str, actual: int, reserved_at: float) -> None:
        keys: list[str] = []
        for limits in scopes:
            keys += [*self._keys(limits)[1:], self._budget_key(limits, limits.period(reserved_at))]
        self._settle(keys=keys, args=[reservation_id, actual])

    def usage(self, scope: ScopeLimits, now: float) -> dict[str, int]:
        window, costs, in_flight, holds = self._keys(scope)
        period = scope.period(now)
        self._redis.zremrangebyscore(window, "-inf", now - WINDOW_SECONDS)
        live = set(self._redis.zrangebyscore(in_flight, f"({now}", "+inf"))  # past their deadline: lost
        held = 0
        for reservation_id, hold in self._redis.hgetall(holds).items():
            held_in, _, tokens = (hold.decode() if isinstance(hold, bytes) else str(hold)).partition(":")
            held += int(tokens) if held_in == period and reservation_id in live else 0
        return {
            "requests_in_window": int(self._redis.zcard(window)),
            "tokens_in_window": sum(int(value) for value in self._redis.hvals(costs)),
            "concurrent": len(live),
            "budget_used": int(self._redis.get(self._budget_key(scope, period)) or 0) + held,
        }
