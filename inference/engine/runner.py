"""What every loaded model looks like to the engine, whichever runtime serves it.

A runner lives on the engine thread only: the engine admits requests to it,
steps it while it has work, cancels, and closes it when the pool unloads it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from inference.engine.types import EngineError, EventSink, ModelSpec

Release = Callable[[str], None]  # hands a request's queue slot back to the engine (by model key)


class Runner(ABC):
    kind = "text"

    def __init__(self, spec: ModelSpec, release: Release) -> None:
        self.spec = spec
        self._release_slot = release
        self.loaded_at = time.time()
        self.last_used = time.time()
        self.weights_bytes = 0  # measured from the loaded arrays, not guessed from a parameter count
        self.context_length = 0
        self.kernel: dict[str, Any] = {}  # what kernels.prepare_model reported
        self.published: tuple[Any, ...] = ()  # the last published state, to skip unchanged steps

    @property
    def key(self) -> str:
        return self.spec["key"]

    @property
    def pinned(self) -> bool:
        return bool(self.spec.get("pinned"))

    # ---- what each runtime provides -------------------------------------------------

    @abstractmethod
    def admit(self, request: Any, sink: EventSink) -> None:
        """Start ``request``; raise EngineError to refuse it (the engine tells the client)."""

    @property
    @abstractmethod
    def requests(self) -> int:
        """Requests admitted and not finished."""

    @property
    def has_work(self) -> bool:
        return self.requests > 0

    @abstractmethod
    def step(self) -> None:
        """Advance the runtime's work by one unit (a decode step, a batch of inputs)."""

    @abstractmethod
    def cancel(self, request_id: str) -> None:
        """End the request now (its client left); it reports what it produced so far."""

    @abstractmethod
    def fail_all(self, error: EngineError) -> None:
        """End every request with ``error`` (the runtime failed, or the model is being unloaded)."""

    def snapshot(self) -> dict[str, Any]:
        """Runtime-specific figures for the stats (decoding, waiting …)."""
        return {}

    @abstractmethod
    def close(self) -> None:
        """Drop every reference to MLX arrays so their memory can be freed."""

    # ---- shared -------------------------------------------------------------------

    def release(self) -> None:
        self.last_used = time.time()
        self._release_slot(self.key)

    def wrong_kind(self, asked: str) -> EngineError:
        return EngineError(
            f"This model is a {self.kind} model; it cannot serve {asked}.",
            status=400,
            code="wrong_model_kind",
            param="model",
        )
