"""The engine's figures as the web side reads them: typed, and JSON on the wire. No MLX here.

The engine publishes plain dicts (``as_wire``); clients hand ``EngineStats.from_wire`` of
them to callers, so a view reads ``stats.models[key].state``, never ``.get`` chains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

ModelState = Literal["loaded", "loading", "unloaded"]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields ``cls`` has: a newer engine may report more than this side knows."""
    names = {item.name for item in dataclasses.fields(cls)}
    return {name: value for name, value in data.items() if name in names}


@dataclass(frozen=True)
class ModelStats:
    key: str
    state: ModelState = "unloaded"
    kind: str = "text"
    path: str = ""
    active_requests: int = 0
    decoding: int = 0
    waiting: int = 0
    weights_bytes: int = 0
    context_length: int | None = None
    prefix_cache_bytes: int = 0
    last_used: float | None = None
    loaded_at: float | None = None
    pinned: bool = False
    loads: int = 0
    evictions: int = 0
    load_seconds: float = 0.0
    last_error: str = ""
    load_failures: int = 0
    # How the weights are served (inference.engine.kernels.prepare_model).
    kernel_path: str | None = None
    blas: str | None = None
    weights_dtype: str | None = None
    quantization: dict[str, int] | None = None
    dequantized: bool = False
    # Embedding models only.
    dimensions: int | None = None
    batches: int | None = None

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ModelStats:
        return cls(**_known(cls, data))

    def as_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def memory_bytes(self) -> int:
        """What the loaded weights hold (0 unless loaded)."""
        return self.weights_bytes if self.state == "loaded" else 0


@dataclass(frozen=True)
class MemoryStats:
    budget_bytes: int = 0
    active_bytes: int = 0
    peak_bytes: int = 0
    prefix_cache_bytes: int = 0
    weights_bytes: int = 0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> MemoryStats:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class EngineStats:
    started: bool = False  # False: no engine has started in this process (reading stats never starts one)
    alive: bool = False
    steps: int = 0
    evictions: int = 0
    waiting_for_memory: int = 0
    memory: MemoryStats = field(default_factory=MemoryStats)
    models: dict[str, ModelStats] = field(default_factory=dict)  # by model key (its folder)
    in_flight: dict[str, int] = field(default_factory=dict)  # requests submitted and not finished, by key

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> EngineStats:
        models = {key: ModelStats.from_wire({**value, "key": key}) for key, value in (data.get("models") or {}).items()}
        return cls(
            started=bool(data.get("started", True)),
            alive=bool(data.get("alive")),
            steps=int(data.get("steps") or 0),
            evictions=int(data.get("evictions") or 0),
            waiting_for_memory=int(data.get("waiting_for_memory") or 0),
            memory=MemoryStats.from_wire(data.get("memory") or {}),
            models=models,
            in_flight={str(key): int(value) for key, value in (data.get("in_flight") or {}).items()},
        )

    def model(self, key: str) -> ModelStats:
        """The figures of the model at ``key``; unloaded when the engine has never seen it."""
        return self.models.get(key) or ModelStats(key=key)
