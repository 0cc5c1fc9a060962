"""What an engine is told when it is made: plain values, no Django, no MLX.

Whoever starts an engine (the web process's runtime, a benchmark, a test) fills
these in; the engine reads nothing else from its surroundings.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelConfig:
    """How this process computes on a CPU (``mlxhub.kernels`` decides it, the engine only follows it)."""

    path: str = "stock"  # "optimized": float weights become float32 and run through the preloaded BLAS
    blas: str | None = None  # the preloaded library's name ("mkl", "openblas"), when optimized
    problem: str | None = None  # why the configured path cannot be served; loads refuse while it is set
    dequantize_limit_bytes: int = 0  # a quantized checkpoint is dequantized to float32 when it fits this


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int  # sequences decoding together
    prefill_batch: int
    prefill_step: int  # prefill runs in chunks of this many tokens between decode steps


@dataclass
class EngineConfig:
    max_batch: int = 32  # sequences decoding together per model
    max_queue: int = 64  # requests waiting beyond the batch, per model
    prefill_batch: int = 8
    # Prefill runs in chunks of this many tokens between decode steps, so a long
    # prompt delays the streams already decoding by one chunk, not the whole prompt.
    prefill_step: int = 256
    prefix_cache_bytes: int = 512 * 1024 * 1024
    memory_budget: int = 0  # bytes for everything the pool holds; 0: no limit
    idle_ttl: float = 0.0  # seconds before an idle model unloads (a profile may say otherwise); 0: never
    load_wait: float = 30.0  # how long a request for a model that does not fit waits for busy ones
    kernels: KernelConfig = field(default_factory=KernelConfig)
    # Test-only: the engine thread dies (as from a bug in its loop) once this file exists. Set only when the
    # settings' MLXHUB_TEST_HOOKS is on (``inference.runtime.engine_config``).
    test_fault_file: str = ""

    @property
    def batch(self) -> BatchConfig:
        return BatchConfig(max_batch=self.max_batch, prefill_batch=self.prefill_batch, prefill_step=self.prefill_step)
