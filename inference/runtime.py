"""The process-wide engine client, of the kind ``MLXHUB_ENGINE_CLIENT`` names.

Importing this module imports no MLX: the client class is imported when the client is
first asked for. The in-process client (the embedded default) is the only kind today;
an engine in another process would be a channel-layer client with the same protocol.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from inference.engine.client import EngineClient
from inference.engine.config import EngineConfig, KernelConfig
from mlxhub import lifecycle
from mlxhub.kernels import engine_kernels

_client: EngineClient | None = None
_lock = threading.Lock()


def kernel_config() -> KernelConfig:
    """This process's CPU kernel path (``mlxhub.kernels``), as the engine is told it."""
    return engine_kernels(settings.MLXHUB_CPU_KERNELS)


def engine_config(**overrides: Any) -> EngineConfig:
    """The engine's configuration from the settings (tests and benchmarks override single values)."""
    values: dict[str, Any] = {
        "max_batch": settings.MLXHUB_MAX_BATCH,
        "max_queue": settings.MLXHUB_MAX_QUEUE,
        "prefill_step": settings.MLXHUB_PREFILL_STEP,
        "prefix_cache_bytes": settings.MLXHUB_PREFIX_CACHE_BYTES,
        "memory_budget": settings.MLXHUB_MEMORY_BUDGET_BYTES,
        "idle_ttl": settings.MLXHUB_IDLE_TTL_SECONDS,
        "load_wait": settings.MLXHUB_LOAD_WAIT_SECONDS,
        "kernels": kernel_config(),
        "test_fault_file": settings.MLXHUB_TEST_ENGINE_FAULT,
    }
    values.update(overrides)
    return EngineConfig(**values)


def engine_client() -> EngineClient:
    """The one client of this process; every caller shares it. Asking for it starts no engine."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                client_class = import_string(settings.MLXHUB_ENGINE_CLIENT)
                client = client_class(engine_config())
                # A client whose engine can die tells the process, which stops admitting and exits to be restarted.
                if (watch := getattr(client, "watch", None)) is not None:
                    watch(lifecycle.engine_died)
                _client = client
    return _client
