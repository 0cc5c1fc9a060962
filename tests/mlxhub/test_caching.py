"""What every /v1 request reads from the cache (the key and rule versions) goes over one pooled Redis
connection per process, not a connection per request: Django gives every asyncio task a cache backend of
its own, and Django's RedisCache gives every backend its own pool."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import redis
from django.core.cache import cache

from mlxhub.accounts.keycache import key_cache
from routing.selectors import _rule_cache
from tests.mlxhub.processes import clean_env, python

REQUESTS = 40
REDIS_URL = os.environ.get("MLXHUB_REDIS_URL") or "redis://127.0.0.1:6379/13"
SHOW_CACHES = (
    "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.CACHES))"
)


def settings_caches(tmp_path) -> dict[str, dict[str, str]]:
    """What mlxhub.settings makes CACHES with MLXHUB_REDIS_URL set, read in a process of its own."""
    result = python(clean_env(tmp_path, MLXHUB_REDIS_URL=REDIS_URL), SHOW_CACHES)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def redis_cache(settings, tmp_path):
    settings.CACHES = settings_caches(tmp_path)  # the backend the product configures, not one named here
    server = redis.Redis.from_url(REDIS_URL)
    yield server
    server.close()


def connections_received(server: redis.Redis) -> int:
    return int(server.info("stats")["total_connections_received"])


@pytest.mark.services
async def test_the_version_reads_of_many_requests_share_one_redis_connection(redis_cache):
    async def one_request() -> None:  # what the data plane reads from the cache for a routed call
        key_cache.get("no-such-key")
        _rule_cache.current()

    before = connections_received(redis_cache)
    for _ in range(REQUESTS):
        await asyncio.create_task(one_request())  # a task each, as each request is one
    made = connections_received(redis_cache) - before

    # One for the shared pool (a little room for another process on the same Redis); a pool per task
    # opened 40 here.
    assert made <= 3, f"{made} connections for {REQUESTS} requests"


@pytest.mark.services
async def test_what_one_request_writes_the_next_reads_through_the_shared_pool(redis_cache):
    async def write() -> None:
        cache.set("mlxhub-test-shared", "written in another task", 30)

    async def read() -> object:
        return cache.get("mlxhub-test-shared")

    await asyncio.create_task(write())
    assert await asyncio.create_task(read()) == "written in another task"
    assert cache.delete("mlxhub-test-shared")
