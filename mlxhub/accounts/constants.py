from __future__ import annotations

# "mlxh-" + 43 url-safe characters (32 random bytes).
API_KEY_PREFIX = "mlxh-"
API_KEY_RANDOM_BYTES = 32
# How much of the key is kept in clear for display and lookup.
API_KEY_DISPLAY_CHARS = 12
# last_used_at is written at most this often per key (seconds), not per request.
API_KEY_LAST_USED_GRANULARITY = 60
# Keys that authenticated are remembered in the web process this long at most (and dropped at once on any
# change to a key, its owner, a team or a membership): the data plane's hot path reads no row.
API_KEY_CACHE_SECONDS = 30.0
API_KEY_CACHE_SIZE = 10_000
KEYS_VERSION_KEY = "accounts:keys-version"
