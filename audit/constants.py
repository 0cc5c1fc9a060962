from __future__ import annotations

# The audit writer flushes when this many rows wait, or after FLUSH_SECONDS.
AUDIT_BATCH_SIZE = 200
AUDIT_FLUSH_SECONDS = 0.5
AUDIT_WRITE_ATTEMPTS = 5
PURGE_BATCH_SIZE = 5000
