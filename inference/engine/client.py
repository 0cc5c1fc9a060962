"""The engine-client interface the web side talks to. Importing it imports no MLX.

``EngineClient`` is what views, services and pages call; the in-process client
(``inference.engine.local``) runs the engine on a thread of this process, and an
engine in another process (a channel-layer client) implements the same protocol.
What crosses it is plain data (``inference.engine.types``, ``inference.engine.stats``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from inference.engine.stats import EngineStats, ModelStats
from inference.engine.types import TERMINAL_EVENTS, EngineEvent, EngineRequest, GenerationRequest, ModelSpec


class RequestStream:
    """One submitted request's events, read from asyncio.

    ``cancel`` may be called from any thread, any number of times (a response dropped by the
    server's handler is closed from a worker thread); the client's ``cancel`` callable must be
    thread-safe.
    """

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._cancel = cancel
        self.finished = False
        # Set by a reader that leaves early: still told how the request really ended.
        self.on_terminal: Callable[[EngineEvent], None] | None = None

    def push(self, event: EngineEvent) -> None:
        """Called on the reader's event loop by the client."""
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
        # Python 3.11's asyncio.wait_for returns an event that raced a cancellation and drops the
        # cancellation: a client that left at that moment would keep its slot until max_tokens.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
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
    async def start(self) -> None:
        """Make the engine ready to serve (the in-process one starts its thread; a remote one is running)."""

    def open(self, request: EngineRequest) -> RequestStream:
        """Submit ``request``; raises EngineError (429 ``queue_full``) when the model's queue is full."""

    async def stats(self) -> EngineStats:
        """The engine's figures; never starts an engine (``started`` is False when none runs)."""

    async def preload(self, spec: ModelSpec) -> ModelStats:
        """Load ``spec`` unless loaded; raises EngineError (503 when it cannot fit or load)."""

    async def unload(self, key: str, *, force: bool = False) -> ModelStats:
        """Unload a model; raises EngineError (409 ``model_busy``) while it serves requests unless forced."""

    async def count_tokens(self, request: GenerationRequest) -> int:
        """How many prompt tokens ``request`` would have, rendered as the engine renders it."""

    async def problem(self) -> str | None:
        """Why this client cannot serve now (for /readyz), or None when it can."""
