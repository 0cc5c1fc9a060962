from __future__ import annotations

# Paths under /v1 that accept requests; everything else there is a 404 in OpenAI's shape.
OWNED_BY = "mlxhub"
SSE_HEARTBEAT = b": keepalive\n\n"
SSE_DONE = b"data: [DONE]\n\n"
