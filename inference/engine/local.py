"""The in-process engine client: the engine runs on a thread of this process (the embedded default).

Importing this module imports MLX; the web side reaches it only through the client factory
(``inference.runtime.engine_client``), which the setting ``MLXHUB_ENGINE_CLIENT`` names.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Callable

from inference.engine.client import RequestStream
from inference.engine.config import EngineConfig
from inference.engine.engine import Engine
from inference.engine.stats import EngineStats, ModelStats
from inference.engine.tokens import count_prompt_tokens
from inference.engine.types import EngineEvent, EngineRequest, GenerationRequest, ModelSpec


class InProcessEngineClient:
    """Runs the engine on a thread of this process and bridges its events to asyncio.

    The engine starts on the first request or load, never on a read of its stats.
    """

    def __init__(self, config: EngineConfig | None = None, *, engine: Engine | None = None) -> None:
        self.engine = engine or Engine(config or EngineConfig())
        self._start_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self.engine.started

    def watch(self, callback: Callable[[BaseException], None]) -> None:
        """``callback(error)`` runs if the engine's thread dies (its requests have had their error events)."""
        self.engine.watch(callback)

    async def start(self) -> None:
        self._started_engine()

    def _started_engine(self) -> Engine:
        if not self.engine.started:
            with self._start_lock:
                if not self.engine.started:
                    self.engine.start()
                    # Stop the MLX thread before the interpreter tears down MLX's own threads.
                    atexit.register(self.engine.stop)
        return self.engine

    def open(self, request: EngineRequest) -> RequestStream:
        """Submit ``request`` (raises EngineError(429) when the model's queue is full)."""
        engine = self._started_engine()
        loop = asyncio.get_running_loop()
        stream = RequestStream(cancel=lambda: engine.cancel(request.request_id, request.model["key"]))

        def sink(event: EngineEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's event loop is closed: nobody is listening
                loop.call_soon_threadsafe(stream.push, event)

        engine.submit(request, sink)
        return stream

    async def stats(self) -> EngineStats:
        if not self.engine.started:
            return EngineStats(started=False)
        return EngineStats.from_wire(self.engine.stats())

    async def preload(self, spec: ModelSpec) -> ModelStats:
        stats = await asyncio.wrap_future(self._started_engine().preload(spec))
        return ModelStats.from_wire({**stats, "key": spec["key"]})

    async def unload(self, key: str, *, force: bool = False) -> ModelStats:
        if not self.engine.started:
            return ModelStats(key=key)  # nothing is loaded in an engine that never started
        stats = await asyncio.wrap_future(self.engine.unload(key, force=force))
        return ModelStats.from_wire({**stats, "key": key})

    async def count_tokens(self, request: GenerationRequest) -> int:
        # Tokenizing is CPU work in the tokenizers library: a worker thread, never the engine's or the loop's.
        if request.model.get("kind") == "vision":  # its images become tokens too: the processor counts them
            from inference.engine.vision_count import count_vision_prompt_tokens

            return await asyncio.to_thread(count_vision_prompt_tokens, request)
        return await asyncio.to_thread(count_prompt_tokens, request)

    async def problem(self) -> str | None:
        if self.engine.config.kernels.problem:
            return self.engine.config.kernels.problem  # it could not load a model as configured
        if self.engine.started and not self.engine.alive:
            return "the engine thread is not running"
        return None
