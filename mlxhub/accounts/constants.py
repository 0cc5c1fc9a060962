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
# Budgets (mlxhub/accounts/budgets.py): settles reach the database in batches this often; without Redis a web
# process reads the counts of the scopes it used in the last BUDGET_ACTIVE_SECONDS again this often, so it sees
# what other processes settled within about BUDGET_FLUSH_SECONDS + BUDGET_REFRESH_SECONDS.
BUDGET_FLUSH_SECONDS = 0.5
BUDGET_REFRESH_SECONDS = 2.0
BUDGET_ACTIVE_SECONDS = 600.0
BUDGET_WRITE_ATTEMPTS = 3
# A reservation whose settle never comes frees its slot this long after the longest request timeout.
RESERVATION_GRACE_SECONDS = 15.0
