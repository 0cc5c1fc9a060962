"""One process-wide handle on the default cache, for what every request reads from it.

Django's ``caches`` keeps its backends in a context-local, so in an ASGI process every asyncio task, that
is every request, builds a backend of its own. With Redis (``MLXHUB_REDIS_URL``) that meant a new
connection pool and a new connection, with its handshake, on every /v1 request only to read the key and
rule version keys: about 1.9 ms of a routed call on a 2-core machine (docs/data-plane.md). The backend
made here is shared by every task and thread; its connection pool is redis-py's, which is thread-safe.
LocMemCache keeps its data per ``LOCATION`` in a module-level dict, so with the embedded default this
handle and ``django.core.cache.cache`` see the same entries.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

_lock = threading.Lock()
_shared: BaseCache | None = None


def shared_cache() -> BaseCache:
    global _shared
    backend = _shared
    if backend is None:
        with _lock:
            if _shared is None:
                _shared = caches.create_connection(DEFAULT_CACHE_ALIAS)
            backend = _shared
    return backend


@receiver(setting_changed)
def _caches_changed(*, setting: str, **kwargs: Any) -> None:
    global _shared
    if setting == "CACHES":
        with _lock:
            _shared = None
