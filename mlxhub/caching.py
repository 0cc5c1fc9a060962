"""The Redis cache backend (``MLXHUB_REDIS_URL``), with one connection pool per process.

Django keeps its cache backends in a context-local, so in an ASGI process every asyncio task, that is every
request, builds a backend of its own; Django's ``RedisCache`` gives each backend its own client, and so its
own connection pool. Every /v1 request then opened a new Redis connection (TCP, redis-py's handshake, a
package-metadata lookup for ``CLIENT SETINFO``) only to read the key and rule version keys: about 1.4 ms of
a routed call on a 2-core machine (docs/data-plane.md). Here the backends stay per task (building one costs
about 2 µs) and share one client per set of servers and options; its pool is redis-py's, which is
thread-safe and reopens itself in a forked child.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_lock = threading.Lock()
_clients: dict[tuple[str, str], RedisCacheClient] = {}


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._shared_key = (str(server), repr(sorted(params.get("OPTIONS", {}).items())))

    @cached_property
    def _cache(self) -> RedisCacheClient:
        with _lock:
            client = _clients.get(self._shared_key)
            if client is None:
                client = _clients[self._shared_key] = super()._cache  # Django's client, built once per process
        return client
