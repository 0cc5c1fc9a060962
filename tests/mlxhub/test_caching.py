"""What every /v1 request reads from the shared cache (the key and rule versions) goes over one pooled
connection, not a connection per request: Django gives every asyncio task a cache backend of its own."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis
from django.core.cache import cache

from mlxhub.accounts.keycache import key_cache
from mlxhub.caching import shared_cache
from routing.selectors import _rule_cache

REQUESTS = 40


@pytest.fixture
def redis_cache(settings):
    url = os.environ.get("MLXHUB_REDIS_URL") or "redis://127.0.0.1:6379/13"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    server = redis.Redis.from_url(url)
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

    # One for the shared pool (a little room for another process on the same Redis); Django's own
    # per-task backends opened 40 here.
    assert made <= 3, f"{made} connections for {REQUESTS} requests"


@pytest.mark.services
def test_the_shared_backend_follows_the_settings_and_sees_what_django_cache_writes(redis_cache):
    backend = shared_cache()
    assert type(backend).__name__ == "RedisCache"
    cache.set("mlxhub-test-shared", "written through django.core.cache", 30)
    assert backend.get("mlxhub-test-shared") == "written through django.core.cache"
    backend.delete("mlxhub-test-shared")
