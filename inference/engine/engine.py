"""The engine thread: one command queue, admission into the model pool, and a step for every busy model.

All MLX work (load, prefill, decode, embed, unload) happens on the one thread
started by ``Engine.start``: MLX streams belong to the thread that made them.
Other threads only put commands on a queue and read ``stats()``. A request for
a model that is not loaded loads it (``inference.engine.pool``: one load however
many requests wait for it, since loads run on this thread one at a time), or
waits for memory while other models are busy.

The thread survives its own bookkeeping: a failing stats update, eviction or client callback is logged
and costs at most the request it concerns. Should the loop itself die all the same, every request gets
an error event at once, ``submit`` refuses with 503 ``engine_unavailable`` and the watchers are told
(the web process then exits to be restarted: ``mlxhub.lifecycle``).

A very long prompt is rendered and tokenized on a worker thread (``tokenize_elsewhere``): the tokenizer
runs in Rust without the GIL, so the streams already decoding keep their pace.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from inference.engine.config import EngineConfig
from inference.engine.pool import ModelPool, free_unused_memory
from inference.engine.runner import Runner
from inference.engine.tokens import prompt_chars, render_counted
from inference.engine.types import (
    TERMINAL_EVENTS,
    EngineError,
    EngineEvent,
    EngineRequest,
    EventSink,
    GenerationRequest,
    ModelSpec,
)

logger = logging.getLogger(__name__)

# How long the idle engine thread sleeps between looks at its command queue.
IDLE_POLL_SECONDS = 0.5
POOL_CHECK_SECONDS = 0.25
# Prompts longer than this (characters) are tokenized off the engine thread: about 20 ms of tokenizer work.
OFF_THREAD_PROMPT_CHARS = 64 * 1024


class EngineFault(Exception):
    """The test-only fault (``EngineConfig.test_fault_file``): the engine thread dies as from a bug."""


def engine_unavailable(message: str = "The engine is not running.") -> EngineError:
    return EngineError(message, status=503, code="engine_unavailable", retry_after=5)


@dataclass
class Waiting:
    """A request whose model does not fit yet: retried whenever a model goes idle."""

    request: EngineRequest
    sink: EventSink
    deadline: float


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.pool = ModelPool(self.config, self._release)
        self._waiting: list[Waiting] = []
        self._waiting_count = 0  # len(_waiting) as last published, for stats() readers on other threads
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._dead = threading.Event()  # the loop failed: nothing will answer a command again
        self._watchers: list[Callable[[BaseException], None]] = []
        # Requests whose long prompt a worker thread is tokenizing, by request id (engine thread only).
        self._tokenizing: dict[str, tuple[GenerationRequest, EventSink]] = {}
        self._tokenizer_pool: ThreadPoolExecutor | None = None
        # Guarded by _lock: read from web threads, written by the engine thread.
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self.steps = 0
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
        thread = self._thread
        return thread is not None and thread.is_alive() and self._ready.is_set() and not self._dead.is_set()

    def watch(self, callback: Callable[[BaseException], None]) -> None:
        """``callback(error)`` runs on the engine thread if its loop dies (after its requests were failed)."""
        self._watchers.append(callback)

    def _unavailable(self) -> EngineError | None:
        """Why a command would never be answered: the engine stopped, or its thread died (queued before the
        start is fine: the thread drains the queue when it starts)."""
        dead = self._dead.is_set() or (self._thread is not None and not self._thread.is_alive())
        if not (self._stopping.is_set() or dead):
            return None
        return engine_unavailable()

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
        if self._dead.is_set():  # it died between the check and the put: nobody else will answer this
            self._refuse_queued(engine_unavailable())

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
        models, memory = self.pool.snapshot()
        with self._lock:
            in_flight = dict(self._in_flight)
        return {
            "started": True,
            "alive": self.alive,
            "steps": self.steps,
            "models": models,
            "in_flight": in_flight,
            "memory": memory,
            "evictions": self.pool.evictions,
            "waiting_for_memory": self._waiting_count,
        }

    # ---- the engine thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self.pool.open()
            self._ready.set()
            while not self._stopping.is_set():
                if self.config.test_fault_file and os.path.exists(self.config.test_fault_file):
                    raise EngineFault(f"injected by the test hook ({self.config.test_fault_file})")
                self._turn()
        except BaseException as exc:  # the loop itself failed: no request may wait for it
            self._die(exc)
            return
        self.pool.close()
        self._refuse_all(EngineError("The server is shutting down.", status=503, code="shutting_down"))
        self._end_thread()

    def _turn(self) -> None:
        busy = any(runner.has_work for runner in self.pool.runners.values())
        self._drain_commands(block=not busy)
        for runner in list(self.pool.runners.values()):
            if runner.has_work:
                self._step(runner)
        try:
            self._expire()
        except Exception:  # eviction and retries are bookkeeping: the next check tries again
            logger.exception("the engine's pool upkeep failed")

    def _refuse_all(self, error: EngineError) -> None:
        """Requests waiting for memory, tokenizing, or still queued get ``error``."""
        for waiting in self._waiting:
            self._refuse(waiting.request, waiting.sink, error)
        self._waiting.clear()
        for request, sink in self._tokenizing.values():
            self._refuse(request, sink, error)
        self._tokenizing.clear()
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.shutdown(wait=False, cancel_futures=True)
        self._refuse_queued(error)

    def _end_thread(self) -> None:
        free_unused_memory()
        import mlx.core as mx

        # MLX wants every thread that made streams to destroy them itself before it ends; left to the
        # interpreter's teardown they abort the process ("terminate called without an active exception").
        mx.clear_streams()

    def _die(self, error: BaseException) -> None:
        """The loop failed: every request ends with 503 at once, the watchers are told, MLX is let go."""
        logger.critical("the engine thread died; failing every request", exc_info=error)
        self._dead.set()
        self._ready.set()  # a start() still waiting returns; ``alive`` stays False
        unavailable = engine_unavailable("The engine stopped unexpectedly; retry shortly.")
        for runner in list(self.pool.runners.values()):
            try:
                runner.fail_all(unavailable)
            except Exception:
                logger.exception("could not fail the requests of %s", runner.key)
        try:
            self._refuse_all(unavailable)
        except Exception:
            logger.exception("could not refuse the queued requests")
        for callback in self._watchers:
            try:
                callback(error)
            except Exception:
                logger.exception("an engine watcher failed")
        try:
            self.pool.close()
            self._end_thread()
        except Exception:
            logger.exception("could not release MLX after the engine died")

    def _refuse_queued(self, error: EngineError) -> None:
        """Commands that arrived while the engine stopped get an answer, never a wait that does not end."""
        while True:
            try:
                kind, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind in ("submit", "tokenized"):
                request, sink = payload[:2]
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
                request, sink = payload
                self._admit(request, self._guarded(request, sink))
            elif kind == "tokenized":
                self._tokenized(*payload)
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

    def _publish(self, runner: Runner) -> None:
        try:
            self.pool.publish(runner)
        except Exception:  # stats are for readers; a failure to publish them must not stop the work
            logger.exception("could not publish the stats of %s", runner.key)

    def _guarded(self, request: EngineRequest, sink: EventSink) -> EventSink:
        """``sink`` whose failure (a client's callback raising) cancels its own request, never the batch."""
        broken = False

        def deliver(event: EngineEvent) -> None:
            nonlocal broken
            try:
                sink(event)
            except Exception:
                logger.exception("the event sink of %s failed", request.trace_id or request.request_id)
                if not broken and event["type"] not in TERMINAL_EVENTS:
                    broken = True
                    self._commands.put(("cancel", (request.request_id, request.model["key"])))

        return deliver

    # ---- requests -------------------------------------------------------------------

    def _admit(self, request: EngineRequest, sink: EventSink, *, waited: bool = False) -> bool:
        """Start ``request``; False when it waits for memory (it stays queued)."""
        key = request.model["key"]
        try:
            runner = self.pool.runners.get(key)
            if runner is None:
                runner = self.pool.load_for(request.model, can_wait=not waited)
                if runner is None:
                    if not waited:
                        self._waiting.append(Waiting(request, sink, time.monotonic() + self.config.load_wait))
                        self._waiting_count = len(self._waiting)
                    return False
            self.pool.update_spec(runner, request.model)
            if self._tokenize_elsewhere(runner, request, sink):
                return True
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

    def _tokenize_elsewhere(self, runner: Runner, request: EngineRequest, sink: EventSink) -> bool:
        """A text request with a very long prompt: render and tokenize it on a worker thread; it comes back
        as a "tokenized" command with its token ids. False: admit it here, now."""
        if runner.kind != "text" or not isinstance(request, GenerationRequest) or request.prompt_tokens is not None:
            return False
        if prompt_chars(request) < OFF_THREAD_PROMPT_CHARS:
            return False
        if self._tokenizer_pool is None:
            # One worker: a tokenizer instance is not shared by two threads at once.
            self._tokenizer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx-tokenize")
        self._tokenizing[request.request_id] = (request, sink)
        future = self._tokenizer_pool.submit(render_counted, request, context_length=runner.context_length)
        future.add_done_callback(lambda done: self._commands.put(("tokenized", (request, sink, done))))
        return True

    def _tokenized(self, request: GenerationRequest, sink: EventSink, done: Future[list[int]]) -> None:
        if self._tokenizing.pop(request.request_id, None) is None:
            return  # cancelled (and answered) while it was being tokenized
        try:
            ids = done.result()
        except EngineError as exc:
            self._refuse(request, sink, exc)
            return
        except Exception as exc:
            logger.exception("tokenizing request %s failed", request.trace_id or request.request_id)
            error = EngineError(
                f"The prompt could not be tokenized: {type(exc).__name__}.", status=500, code="engine_error"
            )
            self._refuse(request, sink, error)
            return
        # The messages stay for the runner's error wording; the ids are what it feeds the model.
        self._admit(dataclasses.replace(request, prompt_tokens=ids), sink)

    def _refuse(self, request: EngineRequest, sink: EventSink, error: EngineError) -> None:
        self._release(request.model["key"])
        sink(error.as_event())

    def _cancel(self, request_id: str, model_key: str) -> None:
        if (tokenizing := self._tokenizing.pop(request_id, None)) is not None:
            self._refuse(*tokenizing, EngineError("Cancelled.", status=499, code="cancelled"))
            return
        for waiting in self._waiting:
            if waiting.request.request_id == request_id:
                self._waiting.remove(waiting)
                self._waiting_count = len(self._waiting)
                self._refuse(waiting.request, waiting.sink, EngineError("Cancelled.", status=499, code="cancelled"))
                return
        runner = self.pool.runners.get(model_key)
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
                self._refuse(waiting.request, waiting.sink, self.pool.no_room(waiting.request.model))
        self._waiting_count = len(self._waiting)

    def _expire(self) -> None:
        """A few times a second: let requests waiting for memory try again, unload models idle past their TTL."""
        now = time.monotonic()
        if now < self._next_pool_check:
            return
        self._next_pool_check = now + POOL_CHECK_SECONDS
        if self._waiting:
            self._retry_waiting()
        self.pool.unload_idle()

    def _load_command(self, spec: ModelSpec, done: Future[dict[str, Any]]) -> None:
        try:
            runner = self.pool.runners.get(spec["key"])
            if runner is None:
                runner = self.pool.load_for(spec, can_wait=False)
                if runner is None:
                    raise self.pool.no_room(spec)
            self.pool.update_spec(runner, spec)
            runner.last_used = time.time()
            self._publish(runner)
        except EngineError as exc:
            done.set_exception(exc)
            return
        done.set_result(self.pool.model_stats(spec["key"]))

    def _unload_command(self, key: str, force: bool, done: Future[dict[str, Any]]) -> None:
        runner = self.pool.runners.get(key)
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
        self.pool.unload(runner, reason="asked to")
        done.set_result({"state": "unloaded"})

    # ---- stats ----------------------------------------------------------------------

    def _release(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)
