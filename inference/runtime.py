"""The process-wide engine client: the in-process engine for the embedded default."""

from __future__ import annotations

import atexit
import threading

from django.conf import settings

from inference.engine.client import EngineClient, InProcessEngineClient
from inference.engine.engine import Engine, EngineConfig

_client: EngineClient | None = None
_lock = threading.Lock()


def engine_client() -> EngineClient:
    """Start the engine on first use; every caller shares it."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                engine = Engine(
                    EngineConfig(
                        max_batch=settings.MLXHUB_MAX_BATCH,
                        max_queue=settings.MLXHUB_MAX_QUEUE,
                        prefill_step=settings.MLXHUB_PREFILL_STEP,
                        prefix_cache_bytes=settings.MLXHUB_PREFIX_CACHE_BYTES,
                        memory_budget=settings.MLXHUB_MEMORY_BUDGET_BYTES,
                        idle_ttl=settings.MLXHUB_IDLE_TTL_SECONDS,
                        load_wait=settings.MLXHUB_LOAD_WAIT_SECONDS,
                    )
                )
                engine.start()
                # Stop the MLX thread before the interpreter tears down MLX's own threads.
                atexit.register(engine.stop)
                _client = InProcessEngineClient(engine)
    return _client


def engine_started() -> bool:
    return _client is not None and _client.ready
