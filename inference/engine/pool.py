"""The model pool: which models are loaded, one memory account for all of them, and what it publishes.

Lives on the engine thread (``inference.engine.engine``): it loads a model when a request first
names it, keeps one memory account for weights, KV caches and the prefix cache (MLX's own counter of
live bytes), evicts idle models least recently used first when a load would not fit, never evicts a
pinned model, and unloads idle models after their TTL. Other threads read only what it publishes,
under its lock.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.engine.config import EngineConfig
from inference.engine.kernels import expected_weights_bytes
from inference.engine.runner import Release, Runner
from inference.engine.text import TextRunner
from inference.engine.types import EngineError, ModelSpec

logger = logging.getLogger(__name__)

# Weight files: what a load reads into memory (the estimate before a load; measured after).
WEIGHT_SUFFIXES = (".safetensors", ".npz")
RETRY_AFTER_SECONDS = 5
# A model whose load just failed is not tried again for this long: the requests that queued behind the
# failed load (and any arriving meanwhile) get its error at once instead of each repeating it.
LOAD_RETRY_SECONDS = 5


@dataclass
class ModelRecord:
    """What the pool remembers of a model across loads and unloads."""

    state: str = "unloaded"
    loads: int = 0
    evictions: int = 0
    load_seconds: float = 0.0
    last_error: str = ""
    failed_at: float = 0.0  # monotonic time of the last failed load
    load_failures: int = 0
    weights_bytes: int = 0  # measured at the last load: a better estimate for the next one than file sizes


def weights_on_disk(path: str) -> int:
    folder = Path(path)
    try:
        return sum(item.stat().st_size for item in folder.iterdir() if item.name.endswith(WEIGHT_SUFFIXES))
    except OSError:
        return 0


def active_memory() -> int:
    import mlx.core as mx

    return int(mx.get_active_memory())


def free_unused_memory() -> None:
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


class ModelPool:
    def __init__(self, config: EngineConfig, release: Release) -> None:
        self.config = config
        self._release = release  # hands a finished request's queue slot back to the engine
        self.runners: dict[str, Runner] = {}
        self._records: dict[str, ModelRecord] = {}
        self.prefix_cache: Any = None
        self.evictions = 0
        # Guarded by _lock: read from web threads, written by the engine thread.
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, Any]] = {}
        self._memory: dict[str, int] = {}

    def open(self) -> None:
        """On the engine thread, before anything else: the prefix cache's MLX arrays belong to it."""
        from mlx_lm.models.cache import LRUPromptCache

        self.prefix_cache = LRUPromptCache(max_size=1 << 30, max_bytes=self.config.prefix_cache_bytes)
        self.publish_memory()

    def close(self) -> None:
        for runner in list(self.runners.values()):
            runner.fail_all(EngineError("The server is shutting down.", status=503, code="shutting_down"))
            self.unload(runner, reason="the engine stopped")
        self.prefix_cache = None
        free_unused_memory()

    @property
    def busy(self) -> bool:
        return any(runner.requests for runner in self.runners.values())

    # ---- loading and making room ---------------------------------------------------------------

    def _record(self, key: str) -> ModelRecord:
        return self._records.setdefault(key, ModelRecord())

    def update_spec(self, runner: Runner, spec: ModelSpec) -> None:
        """Pinning and TTL follow the profile as it is now (a profile edit needs no reload)."""
        for name in ("pinned", "idle_ttl"):
            if name in spec:
                runner.spec[name] = spec[name]  # type: ignore[literal-required]

    def load_for(self, spec: ModelSpec, *, can_wait: bool) -> Runner | None:
        """The loaded runner for ``spec``, loading it (after evictions) when it fits; None: wait."""
        need = self.expected_bytes(spec)
        if not self._make_room(need, keep=spec["key"]):
            if self.busy and can_wait and self.config.load_wait > 0:
                return None
            if self.busy and not can_wait:
                return None  # still waiting; the deadline decides
            raise self.no_room(spec)
        runner = self._load(spec)
        # The estimate came from file sizes; what the load really holds may be more (a float32 kernel path).
        over = bool(self.config.memory_budget) and active_memory() > self.config.memory_budget
        if over and not self._make_room(0, keep=spec["key"]):
            self.unload(runner, reason="did not fit after loading")
            raise self.no_room(spec)
        return runner

    def expected_bytes(self, spec: ModelSpec) -> int:
        """What loading ``spec`` will hold: as measured at its last load, else from its weight files
        and this process's kernel path (float32 doubles a bfloat16 checkpoint)."""
        measured = self._record(spec["key"]).weights_bytes
        return measured or expected_weights_bytes(spec["path"], weights_on_disk(spec["path"]), self.config.kernels)

    def no_room(self, spec: ModelSpec) -> EngineError:
        budget = self.config.memory_budget
        busy = [runner.key for runner in self.runners.values() if runner.requests or runner.pinned]
        return EngineError(
            f"Not enough memory to load this model: it needs about {self.expected_bytes(spec) / 2**20:.0f} MiB, "
            f"the budget is {budget / 2**20:.0f} MiB and {active_memory() / 2**20:.0f} MiB are held by "
            f"{len(busy)} model(s) that are busy or pinned. Retry later.",
            status=503,
            code="insufficient_memory",
            retry_after=RETRY_AFTER_SECONDS,
        )

    def _make_room(self, need: int, *, keep: str) -> bool:
        """Free memory until ``need`` more bytes fit the budget: the prefix cache first, then idle
        models least recently used first (never a pinned one, never ``keep``)."""
        budget = self.config.memory_budget
        if not budget:
            return True
        while active_memory() + need > budget:
            over = active_memory() + need - budget
            if self.prefix_cache is not None and self.prefix_cache.nbytes > 0:
                self.prefix_cache.trim_to(n_bytes=max(0, self.prefix_cache.nbytes - over))
                free_unused_memory()
                if active_memory() + need <= budget:
                    return True
            idle = [r for r in self.runners.values() if not r.requests and not r.pinned and r.key != keep]
            if not idle:
                return False
            victim = min(idle, key=lambda runner: runner.last_used)
            self._record(victim.key).evictions += 1
            self.evictions += 1
            self.unload(victim, reason="evicted to make room")
        return True

    def _load(self, spec: ModelSpec) -> Runner:
        key = spec["key"]
        record = self._record(key)
        if record.last_error and time.monotonic() - record.failed_at < LOAD_RETRY_SECONDS:
            raise self._load_failed(record)
        record.state = "loading"
        self._publish_record(spec, record)
        started = time.perf_counter()
        try:
            runner = self._make_runner(spec)
        except EngineError:
            record.state = "unloaded"
            self._publish_record(spec, record)
            raise
        except Exception as exc:
            logger.exception("loading %s failed", spec["path"])
            record.state = "unloaded"
            record.last_error = f"{type(exc).__name__}: {exc}"[:500]
            record.failed_at = time.monotonic()
            record.load_failures += 1
            self._publish_record(spec, record)
            free_unused_memory()
            raise self._load_failed(record) from exc
        record.loads += 1
        record.state = "loaded"
        record.load_seconds = time.perf_counter() - started
        record.last_error = ""
        record.weights_bytes = runner.weights_bytes
        self.runners[key] = runner
        logger.info("loaded model %s (%s) in %.2fs", spec["path"], runner.kind, record.load_seconds)
        self.publish(runner)
        return runner

    @staticmethod
    def _load_failed(record: ModelRecord) -> EngineError:
        kind = record.last_error.split(":", 1)[0]  # the exception's type; its text may name server paths
        return EngineError(
            f"The model could not be loaded: {kind}.",
            status=503,
            code="model_load_failed",
            retry_after=LOAD_RETRY_SECONDS,
        )

    def _make_runner(self, spec: ModelSpec) -> Runner:
        kind = spec.get("kind", "text")
        kernels = self.config.kernels
        if kind == "embedding":
            from inference.engine.embeddings import EmbeddingRunner

            # Padded tokens per forward pass: about the work of a few prefill chunks, so other models keep decoding.
            return EmbeddingRunner(spec, self._release, kernels=kernels, max_batch_tokens=self.config.prefill_step * 4)
        if kind == "vision":
            from inference.engine.vision import VisionRunner

            return VisionRunner(spec, self._release, kernels=kernels)
        return TextRunner(spec, self._release, kernels=kernels, batch=self.config.batch, prefix_cache=self.prefix_cache)

    def unload(self, runner: Runner, *, reason: str) -> None:
        if runner.requests:
            runner.fail_all(
                EngineError(
                    "The model was unloaded while this request was running.",
                    status=503,
                    code="model_unloaded",
                    retry_after=1,
                )
            )
        self.runners.pop(runner.key, None)
        runner.close()
        record = self._record(runner.key)
        record.state = "unloaded"
        self._publish_record(runner.spec, record)
        del runner
        free_unused_memory()
        self.publish_memory()
        logger.info("unloaded a model (%s)", reason)

    def unload_idle(self) -> None:
        """Models idle past their TTL (the profile's, else the engine's) go; pinned ones never."""
        wall = time.time()
        for runner in list(self.runners.values()):
            ttl = runner.spec.get("idle_ttl")
            ttl = self.config.idle_ttl if ttl is None else ttl
            if ttl and not runner.pinned and not runner.requests and wall - runner.last_used >= ttl:
                self.unload(runner, reason=f"idle for {ttl:.0f}s")

    # ---- what other threads read ------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        with self._lock:
            return {key: dict(value) for key, value in self._stats.items()}, dict(self._memory)

    def model_stats(self, key: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._stats.get(key, {}))

    def publish_memory(self) -> None:
        import mlx.core as mx

        prefix = self.prefix_cache.nbytes if self.prefix_cache is not None else 0
        memory = {
            "budget_bytes": self.config.memory_budget,
            "active_bytes": int(mx.get_active_memory()),
            "peak_bytes": int(mx.get_peak_memory()),
            "prefix_cache_bytes": prefix,
            "weights_bytes": sum(runner.weights_bytes for runner in self.runners.values()),
        }
        with self._lock:
            self._memory = memory

    def _publish_record(self, spec: ModelSpec, record: ModelRecord) -> None:
        snapshot = {
            "state": record.state,
            "kind": spec.get("kind", "text"),
            "path": spec["path"],
            "loads": record.loads,
            "evictions": record.evictions,
            "load_seconds": round(record.load_seconds, 3),
            "last_error": record.last_error,
            "load_failures": record.load_failures,
            "pinned": bool(spec.get("pinned")),
            "active_requests": 0,
            "weights_bytes": 0,
        }
        with self._lock:
            self._stats[spec["key"]] = snapshot

    def publish(self, runner: Runner) -> None:
        prefix_cache_bytes = self.prefix_cache.nbytes if self.prefix_cache is not None else 0
        # Most decode steps change none of these: skip the dict and the lock the web threads read under.
        state = (runner.requests, prefix_cache_bytes, runner.last_used, runner.pinned, *runner.snapshot().values())
        if state == runner.published:
            return
        runner.published = state
        record = self._record(runner.key)
        snapshot = {
            "state": "loaded",
            "kind": runner.kind,
            "path": runner.spec["path"],
            "active_requests": runner.requests,
            "weights_bytes": runner.weights_bytes,
            "context_length": runner.context_length,
            "prefix_cache_bytes": prefix_cache_bytes,
            "last_used": runner.last_used,
            "loaded_at": runner.loaded_at,
            "pinned": runner.pinned,
            "loads": record.loads,
            "evictions": record.evictions,
            "load_seconds": round(record.load_seconds, 3),
            "last_error": record.last_error,
            **runner.snapshot(),
            **runner.kernel,
        }
        with self._lock:
            self._stats[runner.key] = snapshot
        if not runner.requests:
            self.publish_memory()
