"""Token budgets outlive the process: a restart, a crash, and a second web process on one database (no Redis)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import openai
import pytest

from tests.audit.test_live_governance import create_key, key_usage
from tests.conftest import LiveHub, start_hub, stop_hub

pytestmark = pytest.mark.live

BUDGET = 600


def spend(hub: LiveHub, secret: str, max_tokens: int, times: int = 1) -> int:
    """Tokens the answers say they used (a random model may stop before max_tokens)."""
    client = openai.OpenAI(base_url=f"{hub.base_url}/v1", api_key=secret, max_retries=0, timeout=120)
    total = 0
    for index in range(times):
        answer = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": f"spend {index}"}], max_tokens=max_tokens
        )
        assert answer.usage is not None
        total += answer.usage.total_tokens
    return total


def refused_for_budget(hub: LiveHub, secret: str, max_tokens: int) -> openai.RateLimitError:
    client = openai.OpenAI(base_url=f"{hub.base_url}/v1", api_key=secret, max_retries=0, timeout=120)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "one more"}], max_tokens=max_tokens
        )
    return refused.value


def durable_tokens(home: Path, key_id: int) -> int:
    with sqlite3.connect(home / "db.sqlite3") as database:
        row = database.execute(
            "SELECT SUM(tokens) FROM accounts_budgetusage WHERE scope = ?", (f"key:{key_id}",)
        ).fetchone()
    return int(row[0] or 0)


def wait_until(condition, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.2)


def test_a_budget_survives_a_restart_and_a_crash(tmp_path):
    home = tmp_path / "home"
    hub = start_hub(home)
    try:
        key_id, secret = create_key(hub, token_budget=BUDGET, budget_period="day")
        spent = spend(hub, secret, max_tokens=100, times=4)
        used = key_usage(hub, key_id)["budget_used"]
        assert used == spent and used < BUDGET
    finally:
        stop_hub(hub)  # SIGTERM straight after the last answer: what it holds is written before it exits

    hub = start_hub(home)
    try:
        assert key_usage(hub, key_id)["budget_used"] == used  # read from the database: nothing served yet
        error = refused_for_budget(hub, secret, max_tokens=BUDGET - used + 1)
        assert error.body["param"] == "token_budget" and f"{used} used" in error.body["message"]
        spent = spend(hub, secret, max_tokens=20)
        after = key_usage(hub, key_id)["budget_used"]
        assert after == used + spent
        wait_until(lambda: durable_tokens(home, key_id) == after)
        os.kill(hub.process.pid, signal.SIGKILL)  # a crash, or the OOM killer: nothing runs on the way out
        hub.process.wait()
    finally:
        stop_hub(hub)

    hub = start_hub(home)
    try:
        assert key_usage(hub, key_id)["budget_used"] == after
        assert refused_for_budget(hub, secret, max_tokens=BUDGET - after + 1).body["param"] == "token_budget"
    finally:
        stop_hub(hub)


def test_two_web_processes_on_one_database_without_redis_share_the_budget(tmp_path):
    home = tmp_path / "shared-home"
    first = start_hub(home)
    second = None
    try:
        second = start_hub(home)  # the same MLXHUB_HOME: one SQLite database, and no Redis
        key_id, secret = create_key(first, token_budget=BUDGET, budget_period="day")
        spent = spend(second, secret, max_tokens=10)  # the second process now holds its own count of this key
        spent += spend(first, secret, max_tokens=100, times=4)
        wait_until(lambda: durable_tokens(home, key_id) == spent, timeout=20)
        used = durable_tokens(home, key_id)
        assert used < BUDGET

        # The first process wrote within 0.5 s; the second reads its scopes again every 2 s.
        wait_until(lambda: key_usage(second, key_id)["budget_used"] == used, timeout=20)
        error = refused_for_budget(second, secret, max_tokens=BUDGET - used + 1)
        assert error.body["param"] == "token_budget"
    finally:
        if second is not None:
            stop_hub(second)
        stop_hub(first)
