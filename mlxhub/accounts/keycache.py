"""Recently authenticated API keys, by the hash of their secret, for the data plane's hot path.

A key is looked up in the database once; afterwards the web process answers from memory until the
entry is ``API_KEY_CACHE_SECONDS`` old or anything that decides a key's validity changes: every save
or delete of a key, a user, a team or a membership bumps a version in the shared cache (after commit),
and every process drops its entries when it sees a new version. Expiry is checked on every use.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from mlxhub.accounts.constants import API_KEY_CACHE_SECONDS, API_KEY_CACHE_SIZE, KEYS_VERSION_KEY
from mlxhub.accounts.models import ApiKey, Membership, Team


class KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        self._version: str | None = None

    def _current_version(self) -> str:
        version = cache.get(KEYS_VERSION_KEY)
        if version is None:
            version = uuid.uuid4().hex
            cache.add(KEYS_VERSION_KEY, version, None)
            version = cache.get(KEYS_VERSION_KEY) or version
        return str(version)

    def get(self, hashed: str) -> ApiKey | None:
        version = self._current_version()
        with self._lock:
            if version != self._version:
                self._keys.clear()
                self._version = version
                return None
            entry = self._keys.get(hashed)
            if entry is None:
                return None
            api_key, stored_at = entry
            if time.monotonic() - stored_at > API_KEY_CACHE_SECONDS:
                del self._keys[hashed]
                return None
            self._keys.move_to_end(hashed)
            return api_key

    def put(self, hashed: str, api_key: ApiKey) -> None:
        version = self._current_version()
        with self._lock:
            if version != self._version:
                self._keys.clear()
                self._version = version
            self._keys[hashed] = (api_key, time.monotonic())
            while len(self._keys) > API_KEY_CACHE_SIZE:
                self._keys.popitem(last=False)

    def invalidate(self) -> None:
        cache.set(KEYS_VERSION_KEY, uuid.uuid4().hex, None)
        with self._lock:
            self._keys.clear()


key_cache = KeyCache()


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
@receiver(post_save, sender=Team)
@receiver(post_delete, sender=Team)
@receiver(post_save, sender=Membership)
@receiver(post_delete, sender=Membership)
def _keys_changed(**kwargs: Any) -> None:
    # A key's row is also saved when only its last use is recorded: that changes nothing a check reads.
    if kwargs.get("sender") is ApiKey and kwargs.get("update_fields") == frozenset({"last_used_at"}):
        return
    # At once (this process's next lookup reads the row) and again after commit (another request may have
    # cached the row as it was before the transaction ended).
    key_cache.invalidate()
    transaction.on_commit(key_cache.invalidate)
