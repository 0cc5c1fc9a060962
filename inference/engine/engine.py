"""The engine thread and the model pool it keeps.

All MLX work (load, prefill, decode, embed, unload) happens on the one thread
started by ``Engine.start``: MLX streams belong to the thread that made them.
Other threads only put commands on a queue and read ``stats()``.

The pool loads a model when a request first names it (one load, however many
requests wait for it: loads run on this thread, one at a time), keeps one
memory account for weights, KV caches and the prefix cache (MLX's own counter
of live bytes), evicts idle models least recently used first when a load would
not fit, never evicts a pinned model, and unloads idle models after their TTL.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.engine.config import EngineConfig
from inference.engine.kernels import expected_weights_bytes
from inference.engine.runner import Runner
from inference.engine.text import TextRunner
from inference.engine.types import EngineError, EngineRequest, EventSink, ModelSpec

logger = logging.getLogger(__name__)

# How long the idle engine thread sleeps between looks at its command queue.
IDLE_POLL_SECONDS = 0.5
# Weight files: what a load reads into memory (the estimate before a load; measured after).
WEIGHT_SUFFIXES = (".safetensors", ".npz")
RETRY_AFTER_SECONDS = 5
POOL_CHECK_SECONDS = 0.25
# A model whose load just failed is not tried again for this long: the requests that queued behind the
# failed load (and any arriving meanwhile) get its error at once instead of each repeating it.
LOAD_RETRY_SECONDS = 5


@dataclass
class Waiting:
    """A request whose model does not fit yet: retried whenever a model goes idle."""

    request: EngineRequest
    sink: EventSink
    deadline: float


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


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._runners: dict[str, Runner] = {}
        self._records: dict[str, ModelRecord] = {}
        self._waiting: list[Waiting] = []
        self._waiting_count = 0  # len(_waiting) as last published, for stats() readers on other threads
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        # Guarded by _lock: read from web threads, written by the engine thread.
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._memory: dict[str, int] = {}
        self._prefix_cache: Any = None
        self.steps = 0
        self.evictions = 0
        self._next_pool_check = 0.0

    # ---- called from any thread -------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=60)

    def stop(self) -> None:
        self._stopping.set()
        self._commands.put(("wake", None))
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def _unavailable(self) -> EngineError | None:
        """Why a command would never be answered: the engine stopped, or its thread died (queued before the
        start is fine: the thread drains the queue when it starts)."""
        dead = self._thread is not None and not self._thread.is_alive()
        if not (self._stopping.is_set() or dead):
            return None
        return EngineError("The engine is not running.", status=503, code="engine_unavailable", retry_after=5)

    def submit(self, request: EngineRequest, sink: EventSink) -> None:
        """Queue a request; raises EngineError(429) when the model's queue is full, 503 when the engine stopped."""
        if (unavailable := self._unavailable()) is not None:
            raise unavailable
        key = request.model["key"]
        limit = self.config.max_batch + self.config.max_queue
        with self._lock:
            in_flight = self._in_flight.get(key, 0)
            if in_flight >= limit:
                raise EngineError(
                    f"The queue for this model is full ({in_flight} requests in flight); retry shortly.",
                    status=429,
                    code="queue_full",
                    retry_after=1,
                )
            self._in_flight[key] = in_flight + 1
        self._commands.put(("submit", (request, sink)))

    def cancel(self, request_id: str, model_key: str) -> None:
        self._commands.put(("cancel", (request_id, model_key)))

    def preload(self, spec: ModelSpec) -> Future[dict[str, Any]]:
        """Load ``spec`` if it is not loaded; the future holds its stats, or the EngineError."""
        done: Future[dict[str, Any]] = Future()
        if (unavailable := self._unavailable()) is not None:
            done.set_exception(unavailable)
            return done
        self._commands.put(("load", (spec, done)))
        return done

    def unload(self, key: str, *, force: bool = False) -> Future[dict[str, Any]]:
        """Unload a model; with requests in flight only when forced (they end with a 503)."""
        done: Future[dict[str, Any]] = Future()
        if (unavailable := self._unavailable()) is not None:
            done.set_exception(unavailable)
            return done
        self._commands.put(("unload", (key, force, done)))
        return done

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "started": True,
                "alive": self.alive,
                "steps": self.steps,
                "models": {key: dict(value) for key, value in self._stats.items()},
                "in_flight": dict(self._in_flight),
                "memory": dict(self._memory),
                "evictions": self.evictions,
                "waiting_for_memory": self._waiting_count,
            }

    # ---- the engine thread ----------------------------------------------------------

    def _run(self) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self._prefix_cache = LRUPromptCache(max_size=1 << 30, max_bytes=self.config.prefix_cache_bytes)
        self._publish_memory()
        self._ready.set()
        while not self._stopping.is_set():
            busy = any(runner.has_work for runner in self._runners.values())
            self._drain_commands(block=not busy)
            for runner in list(self._runners.values()):
                if runner.has_work:
                    self._step(runner)
            self._expire()
        for runner in list(self._runners.values()):
            runner.fail_all(EngineError("The server is shutting down.", status=503, code="shutting_down"))
            self._unload(runner, reason="the engine stopped")
        shutting_down = EngineError("The server is shutting down.", status=503, code="shutting_down")
        for waiting in self._waiting:
            self._refuse(waiting.request, waiting.sink, shutting_down)
        self._refuse_queued(shutting_down)
        self._prefix_cache = None
        free_unused_memory()
        import mlx.core as mx

        # MLX wants every thread that made streams to destroy them itself before it ends; left to the
        # interpreter's teardown they abort the process ("terminate called without an active exception").
        mx.clear_streams()

    def _refuse_queued(self, error: EngineError) -> None:
        """Commands that arrived while the engine stopped get an answer, never a wait that does not end."""
        while True:
            try:
                kind, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "submit":
                request, sink = payload
                self._refuse(request, sink, error)
            elif kind in ("load", "unload"):
                payload[-1].set_exception(error)

    def _drain_commands(self, *, block: bool) -> None:
        try:
            command = self._commands.get(timeout=IDLE_POLL_SECONDS) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _handle(self, command: tuple[str, Any]) -> None:
        kind, payload = command
        try:
            if kind == "submit":
                self._admit(*payload)
            elif kind == "cancel":
                self._cancel(*payload)
            elif kind == "load":
                self._load_command(*payload)
            elif kind == "unload":
                self._unload_command(*payload)
        except Exception:  # the engine thread must survive any command
            logger.exception("engine command %s failed", kind)

    def _step(self, runner: Runner) -> None:
        try:
            runner.step()
        except Exception as exc:  # the engine thread must survive any request
            logger.exception("step failed for %s; failing its %d requests", runner.key, runner.requests)
            runner.fail_all(
                EngineError(
                    f"The engine failed while generating: {type(exc).__name__}.", status=500, code="engine_error"
                )
            )
        self.steps += 1
        self._publish(runner)

    # ---- requests -------------------------------------------------------------------

    def _admit(self, request: EngineRequest, sink: EventSink, *, waited: bool = False) -> bool:
        """Start ``request``; False when it waits for memory (it stays queued)."""
        key = request.model["key"]
        try:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._load_for(request.model, can_wait=not waited)
                if runner is None:
                    if not waited:
                        self._waiting.append(Waiting(request, sink, time.monotonic() + self.config.load_wait))
                        self._waiting_count = len(self._waiting)
                    return False
            self._update_spec(runner, request.model)
            runner.admit(request, sink)
        except EngineError as exc:
            self._refuse(request, sink, exc)
            return True
        except Exception as exc:
            logger.exception("admitting request %s failed", request.trace_id or request.request_id)
            error = EngineError(
                f"The engine could not start this request: {type(exc).__name__}.", status=500, code="engine_error"
            )
            self._refuse(request, sink, error)
            return True
        runner.last_used = time.time()
        self._publish(runner)
        return True

    def _refuse(self, request: EngineRequest, sink: EventSink, error: EngineError) -> None:
        self._release(request.model["key"])
        sink(error.as_event())

    def _cancel(self, request_id: str, model_key: str) -> None:
        for waiting in self._waiting:
            if waiting.request.request_id == request_id:
                self._waiting.remove(waiting)
                self._waiting_count = len(self._waiting)
                self._refuse(waiting.request, waiting.sink, EngineError("Cancelled.", status=499, code="cancelled"))
                return
        runner = self._runners.get(model_key)
        if runner is not None:
            runner.cancel(request_id)
            self._publish(runner)

    def _retry_waiting(self) -> None:
        """Models went idle or unloaded: requests waiting for memory try again, oldest first."""
        now = time.monotonic()
        for waiting in list(self._waiting):
            if self._admit(waiting.request, waiting.sink, waited=True):
                self._waiting.remove(waiting)
            elif now >= waiting.deadline:
                self._waiting.remove(waiting)
                self._refuse(waiting.request, waiting.sink, self._no_room(waiting.request.model))
        self._waiting_count = len(self._waiting)

    # ---- the pool ---------------------------------------------------------------------

    def _record(self, key: str) -> ModelRecord:
        return self._records.setdefault(key, ModelRecord())

    def _update_spec(self, runner: Runner, spec: ModelSpec) -> None:
        """Pinning and TTL follow the profile as it is now (a profile edit needs no reload)."""
        for name in ("pinned", "idle_ttl"):
            if name in spec:
                runner.spec[name] = spec[name]  # type: ignore[literal-required]

    def _load_for(self, spec: ModelSpec, *, can_wait: bool) -> Runner | None:
        """The loaded runner for ``spec``, loading it (after evictions) when it fits; None: wait."""
        need = self._expected_bytes(spec)
        if not self._make_room(need, keep=spec["key"]):
            busy = any(runner.requests for runner in self._runners.values())
            if busy and can_wait and self.config.load_wait > 0:
                return None
            if busy and not can_wait:
                return None  # still waiting; the deadline decides
            raise self._no_room(spec)
        runner = self._load(spec)
        # The estimate came from file sizes; what the load really holds may be more (a float32 kernel path).
        over = bool(self.config.memory_budget) and active_memory() > self.config.memory_budget
        if over and not self._make_room(0, keep=spec["key"]):
            self._unload(runner, reason="did not fit after loading")
            raise self._no_room(spec)
        return runner

    def _expected_bytes(self, spec: ModelSpec) -> int:
        """What loading ``spec`` will hold: as measured at its last load, else from its weight files
        and this process's kernel path (float32 doubles a bfloat16 checkpoint)."""
        measured = self._record(spec["key"]).weights_bytes
        return measured or expected_weights_bytes(spec["path"], weights_on_disk(spec["path"]), self.config.kernels)

    def _no_room(self, spec: ModelSpec) -> EngineError:
        budget = self.config.memory_budget
        busy = [runner.key for runner in self._runners.values() if runner.requests or runner.pinned]
        return EngineError(
            f"Not enough memory to load this model: it needs about {self._expected_bytes(spec) / 2**20:.0f} MiB, "
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
            if self._prefix_cache is not None and self._prefix_cache.nbytes > 0:
                self._prefix_cache.trim_to(n_bytes=max(0, self._prefix_cache.nbytes - over))
                free_unused_memory()
                if active_memory() + need <= budget:
                    return True
            idle = [r for r in self._runners.values() if not r.requests and not r.pinned and r.key != keep]
            if not idle:
                return False
            victim = min(idle, key=lambda runner: runner.last_used)
            self._record(victim.key).evictions += 1
            self.evictions += 1
            self._unload(victim, reason="evicted to make room")
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
        self._runners[key] = runner
        logger.info("loaded model %s (%s) in %.2fs", spec["path"], runner.kind, record.load_seconds)
        self._publish(runner)
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
        if kind == "embedding":
            from inference.engine.embeddings import EmbeddingRunner

            # Padded tokens per forward pass: about the work of a few prefill chunks, so other models keep decoding.
            return EmbeddingRunner(
                spec, self._release, kernels=self.config.kernels, max_batch_tokens=self.config.prefill_step * 4
            )
        if kind == "vision":
            from inference.engine.vision import VisionRunner

            return VisionRunner(spec, self._release, kernels=self.config.kernels)
        return TextRunner(
            spec, self._release, kernels=self.config.kernels, batch=self.config.batch, prefix_cache=self._prefix_cache
        )

    def _unload(self, runner: Runner, *, reason: str) -> None:
        if runner.requests:
            runner.fail_all(
                EngineError(
                    "The model was unloaded while this request was running.",
                    status=503,
                    code="model_unloaded",
                    retry_after=1,
                )
            )
        self._runners.pop(runner.key, None)
        runner.close()
        record = self._record(runner.key)
        record.state = "unloaded"
        self._publish_record(runner.spec, record)
        del runner
        free_unused_memory()
        self._publish_memory()
        logger.info("unloaded a model (%s)", reason)

    def _expire(self) -> None:
        """A few times a second: let requests waiting for memory try again, unload models idle past their TTL."""
        now = time.monotonic()
        if now < self._next_pool_check:
            return
        self._next_pool_check = now + POOL_CHECK_SECONDS
        if self._waiting:
            self._retry_waiting()
        wall = time.time()
        for runner in list(self._runners.values()):
            ttl = runner.spec.get("idle_ttl")
            ttl = self.config.idle_ttl if ttl is None else ttl
            if ttl and not runner.pinned and not runner.requests and wall - runner.last_used >= ttl:
                self._unload(runner, reason=f"idle for {ttl:.0f}s")

    def _load_command(self, spec: ModelSpec, done: Future[dict[str, Any]]) -> None:
        try:
            runner = self._runners.get(spec["key"])
            if runner is None:
                runner = self._load_for(spec, can_wait=False)
                if runner is None:
                    raise self._no_room(spec)
            self._update_spec(runner, spec)
            runner.last_used = time.time()
            self._publish(runner)
        except EngineError as exc:
            done.set_exception(exc)
            return
        done.set_result(self.stats()["models"].get(spec["key"], {}))

    def _unload_command(self, key: str, force: bool, done: Future[dict[str, Any]]) -> None:
        runner = self._runners.get(key)
        if runner is None:
            done.set_result({"state": "unloaded"})
            return
        if runner.requests and not force:
            done.set_exception(
                EngineError(
                    f"The model has {runner.requests} request(s) in flight; unload with force to cancel them.",
                    status=409,
                    code="model_busy",
                )
            )
            return
        self._unload(runner, reason="asked to")
        done.set_result({"state": "unloaded"})

    # ---- stats ----------------------------------------------------------------------

    def _release(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    def _publish_memory(self) -> None:
        import mlx.core as mx

        prefix = self._prefix_cache.nbytes if self._prefix_cache is not None else 0
        memory = {
            "budget_bytes": self.config.memory_budget,
            "active_bytes": int(mx.get_active_memory()),
            "peak_bytes": int(mx.get_peak_memory()),
            "prefix_cache_bytes": prefix,
            "weights_bytes": sum(runner.weights_bytes for runner in self._runners.values()),
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

    def _publish(self, runner: Runner) -> None:
        prefix_cache_bytes = self._prefix_cache.nbytes if self._prefix_cache is not None else 0
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
            self._publish_memory()
