"""The limit stores (in-process and Redis) and the durable budget count behind them."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mlxhub.accounts import limits
from mlxhub.accounts.budgets import budget_writer
from mlxhub.accounts.limit_stores import LimitExceeded, MemoryLimitStore, ScopeLimits, period_bounds
from mlxhub.accounts.models import BudgetUsage
from mlxhub.accounts.services import api_key_create

REDIS_URL = os.environ.get("MLXHUB_REDIS_URL") or "redis://127.0.0.1:6379/13"
# One second before midnight (UTC) on the last day of a month.
BEFORE_MIDNIGHT = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC).timestamp()


def scope(**values: Any) -> ScopeLimits:
    fields = {"rpm": None, "tpm": None, "max_concurrent": None, "token_budget": None, "budget_period": "day"}
    return ScopeLimits(f"key:{uuid.uuid4().hex[:8]}", "API key test…", **{**fields, **values})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryLimitStore()
    from mlxhub.accounts.limit_redis import RedisLimitStore

    return RedisLimitStore(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}")


def seeded(store: Any, limits: ScopeLimits, now: float, tokens: int = 0) -> ScopeLimits:
    store.seed(limits, limits.period(now), tokens)
    return limits


def test_a_reservation_whose_settle_never_comes_frees_its_slot_at_its_deadline(store):
    limits = seeded(store, scope(max_concurrent=1), BEFORE_MIDNIGHT - 100)
    now = BEFORE_MIDNIGHT - 100
    store.reserve([limits], "lost", 10, now, now + 30)  # its process dies: no settle ever comes

    with pytest.raises(LimitExceeded) as refused:
        store.reserve([limits], "next", 10, now + 29, now + 59)
    assert refused.value.limit == "max_concurrent"

    store.reserve([limits], "after", 10, now + 31, now + 61)
    assert store.usage(limits, now + 31)["concurrent"] == 1


def test_a_settle_after_midnight_counts_in_the_day_it_was_reserved(store):
    limits = seeded(store, scope(token_budget=1000), BEFORE_MIDNIGHT)
    store.reserve([limits], "late", 500, BEFORE_MIDNIGHT, BEFORE_MIDNIGHT + 600)
    after_midnight = BEFORE_MIDNIGHT + 2
    seeded(store, limits, after_midnight)

    store.settle([limits], "late", 120, BEFORE_MIDNIGHT)

    assert store.usage(limits, BEFORE_MIDNIGHT)["budget_used"] == 120
    assert store.usage(limits, after_midnight)["budget_used"] == 0
    assert store.usage(limits, after_midnight)["concurrent"] == 0


def test_a_held_budget_counts_until_it_settles_to_what_was_used(store):
    limits = seeded(store, scope(token_budget=1000), BEFORE_MIDNIGHT, tokens=300)
    store.reserve([limits], "one", 600, BEFORE_MIDNIGHT - 10, BEFORE_MIDNIGHT + 600)

    with pytest.raises(LimitExceeded) as refused:
        store.reserve([limits], "two", 200, BEFORE_MIDNIGHT - 9, BEFORE_MIDNIGHT + 600)
    assert refused.value.limit == "token_budget" and "900 used" in str(refused.value)

    store.settle([limits], "one", 50, BEFORE_MIDNIGHT - 10)
    store.reserve([limits], "two", 200, BEFORE_MIDNIGHT - 8, BEFORE_MIDNIGHT + 600)
    assert store.usage(limits, BEFORE_MIDNIGHT - 8)["budget_used"] == 300 + 50 + 200


# The public functions, on a fresh in-process store, against the test database.
@pytest.fixture
def fresh_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryLimitStore]:
    store = MemoryLimitStore()
    monkeypatch.setattr(limits, "_store", store)
    yield store
    assert budget_writer.flush(timeout=20)


def test_a_process_starts_from_the_budget_the_database_holds(bob, team, fresh_store):
    api_key = api_key_create(owner=bob, name="budgeted", team=team, limits={"token_budget": 1000}).api_key
    period, _ = period_bounds("month", time.time())
    BudgetUsage.objects.create(scope=f"key:{api_key.pk}", period=period, tokens=900)

    with pytest.raises(LimitExceeded) as refused:
        limits.usage_reserve(api_key=api_key, team=None, cost=200)

    assert refused.value.limit == "token_budget" and "900 used" in str(refused.value)
    assert limits.limits_usage(owner=api_key)["budget_used"] == 900


def test_n_choices_reserve_their_cost_n_times(bob, team, fresh_store):
    api_key = api_key_create(owner=bob, name="n", team=team, limits={"tpm": 1000}).api_key

    limits.usage_reserve(api_key=api_key, team=None, cost=300)
    with pytest.raises(LimitExceeded) as refused:
        limits.usage_reserve(api_key=api_key, team=None, cost=300, count=3)

    assert refused.value.limit == "tpm" and "may use 900" in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_settled_tokens_reach_the_database_in_the_period_they_were_reserved(fresh_store):
    from tests.mlxhub.factories import make_user

    owner = make_user("erin")
    api_key = api_key_create(owner=owner, name="durable", limits={"token_budget": 10_000}).api_key

    first = limits.usage_reserve(api_key=api_key, team=None, cost=500)
    second = limits.usage_reserve(api_key=api_key, team=None, cost=500)
    first.settle(120)
    second.settle(80)
    assert budget_writer.flush(timeout=20)

    row = BudgetUsage.objects.get(scope=f"key:{api_key.pk}")
    assert (row.period, row.tokens) == (period_bounds("month", first.reserved_at)[0], 200)
    assert limits.limits_usage(owner=api_key)["budget_used"] == 200  # the fast store, after the write
