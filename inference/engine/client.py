"""The engine-client interface the web side talks to, and its in-process form.

A channel-layer client (an engine in another process) implements the same
methods; views depend only on ``EngineClient`` and ``RequestStream``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Any, Protocol

from inference.engine.engine import Engine, Request
from inference.engine.types import TERMINAL_EVENTS, EngineEvent, ModelSpec


class RequestStream:
    """One submitted request's events, read from asyncio; safe to cancel at any time."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._cancel = cancel
        self.finished = False
        # Set by a reader that leaves early: still told how the request really ended.
        self.on_terminal: Callable[[EngineEvent], None] | None = None

    def push(self, event: EngineEvent) -> None:
        if self.on_terminal is not None and event["type"] in TERMINAL_EVENTS:
            self.on_terminal(event)
            return
        self._events.put_nowait(event)

    async def next_event(self, timeout: float | None = None) -> EngineEvent | None:
        """The next event, or None when ``timeout`` passes first (the request goes on)."""
        try:
            # Waiting on the queue (not on a generator) so a timeout cancels nothing but the wait.
            event = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None
        if event["type"] in TERMINAL_EVENTS:
            self.finished = True
        return event

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            self._cancel()

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        try:
            while not self.finished:
                event = await self.next_event()
                assert event is not None
                yield event
        finally:
            self.cancel()


class EngineClient(Protocol):
    def open(self, request: Request) -> RequestStream: ...

    def stats(self) -> dict[str, Any]: ...

    def preload(self, spec: ModelSpec) -> Future[dict[str, Any]]: ...

    def unload(self, key: str, *, force: bool = False) -> Future[dict[str, Any]]: ...

    @property
    def ready(self) -> bool: ...


class InProcessEngineClient:
    """Runs the engine on a thread of this process and bridges its events to asyncio."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def ready(self) -> bool:
        return self.engine.alive

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()

    def preload(self, spec: ModelSpec) -> Future[dict[str, Any]]:
        return self.engine.preload(spec)

    def unload(self, key: str, *, force: bool = False) -> Future[dict[str, Any]]:
        return self.engine.unload(key, force=force)

    def open(self, request: Request) -> RequestStream:
        """Submit ``request`` (raises EngineError(429) when the model's queue is full)."""
        loop = asyncio.get_running_loop()
        stream = RequestStream(cancel=lambda: self.engine.cancel(request.request_id, request.model["key"]))

        def sink(event: EngineEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's event loop is closed: nobody is listening
                loop.call_soon_threadsafe(stream.push, event)

        self.engine.submit(request, sink)
        return stream
