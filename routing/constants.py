from __future__ import annotations

# The in-process cache of enabled rules is also dropped after this many seconds, so a rule written
# by another process (a second web process, `manage.py shell`) is seen without a restart.
RULES_CACHE_SECONDS = 5.0
# Shared cache key whose value changes whenever a rule or credential changes (Redis: seen by every process).
RULES_VERSION_KEY = "routing:rules-version"
UPSTREAM_CONNECT_TIMEOUT = 5.0
# The longest model name a route is resolved for: the cap /v1 bodies put on `model`. Every rule is tried
# against the name, so an uncapped name would let one request buy unbounded matching time.
MODEL_NAME_MAX_LENGTH = 200
# How long one regex rule may take to decide one model name; slower counts as "does not match". Resolution
# runs on the event loop, so this bounds what a pathological pattern can stall: this times the regex rules.
REGEX_MATCH_TIMEOUT_SECONDS = 0.05
ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; used when an OpenAI client sends none.
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096
SECRET_MASK = "••••"  # noqa: S105 (the mask shown in place of a secret, not a secret)
