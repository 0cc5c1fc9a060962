from __future__ import annotations

# The audit writer flushes when this many rows wait, or after FLUSH_SECONDS.
AUDIT_BATCH_SIZE = 200
AUDIT_FLUSH_SECONDS = 0.5
AUDIT_WRITE_ATTEMPTS = 5
PURGE_BATCH_SIZE = 5000

# The columns of an audit row as the API lists them and the admin exports them.
AUDIT_FIELDS = [
    "created_at", "request_id", "user", "key_prefix", "team", "endpoint", "model_requested", "model_served",
    "backend", "status_code", "error_type", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens",
    "cached_tokens", "streamed", "cancelled",
]  # fmt: skip
