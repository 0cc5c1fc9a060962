"""Embedding models: the inputs of every waiting request are embedded together, one forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.engine.config import KernelConfig
from inference.engine.kernels import prepare_model
from inference.engine.runner import Release, Runner
from inference.engine.text import parameter_bytes
from inference.engine.types import EmbeddingRequest, EngineError, EventSink, ModelSpec


@dataclass
class PendingEmbedding:
    request: EmbeddingRequest
    sink: EventSink
    tokens: list[list[int]]
    done: int = 0  # inputs embedded so far (a request's inputs may span several steps)
    vectors: list[Any] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(item) for item in self.tokens)


class EmbeddingRunner(Runner):
    kind = "embedding"

    def __init__(self, spec: ModelSpec, release: Release, *, kernels: KernelConfig, max_batch_tokens: int) -> None:
        from inference.engine.embedding_runtime import EmbeddingRuntime

        super().__init__(spec, release)
        self.runtime = EmbeddingRuntime(spec["path"])
        self.context_length = self.runtime.max_tokens
        self.kernel = prepare_model(self.runtime.model, path=spec["path"], plan=kernels)
        self.weights_bytes = self.runtime.weights_bytes = parameter_bytes(self.runtime.model)
        self.max_batch_tokens = max_batch_tokens
        self.pending: list[PendingEmbedding] = []
        self.batches = 0  # forward passes, for the stats (how well concurrent requests share them)

    @property
    def requests(self) -> int:
        return len(self.pending)

    def snapshot(self) -> dict[str, Any]:
        return {"dimensions": self.runtime.dimensions, "batches": self.batches}

    def admit(self, request: Any, sink: EventSink) -> None:
        if not isinstance(request, EmbeddingRequest):
            raise self.wrong_kind("chat or text completions")
        tokens: list[list[int]] = []
        for index, item in enumerate(request.inputs):
            try:
                tokens.append(self.runtime.tokenize(item))
            except ValueError as exc:
                raise EngineError(str(exc), status=400, code="invalid_request_error", param=f"input[{index}]") from exc
        self.pending.append(PendingEmbedding(request, sink, tokens))
        sink({"type": "accepted", "prompt_tokens": sum(len(item) for item in tokens), "cached_tokens": 0})

    def step(self) -> None:
        """One forward pass over the waiting inputs, in order, while the padded batch stays within
        ``max_batch_tokens`` (at least one input): a big request cannot stall other models for long."""
        batch: list[list[int]] = []
        owners: list[PendingEmbedding] = []
        longest = 0
        for pending in self.pending:
            for tokens in pending.tokens[pending.done :]:
                wider = max(longest, len(tokens))
                if batch and (len(batch) + 1) * wider > self.max_batch_tokens:
                    break
                batch.append(tokens)
                owners.append(pending)
                longest = wider
            else:
                continue
            break
        vectors = self.runtime.embed(batch)
        self.batches += 1
        for row, pending in zip(vectors, owners, strict=True):
            pending.vectors.append(row)
            pending.done += 1
        for pending in [p for p in self.pending if p.done == len(p.tokens)]:
            self.pending.remove(pending)
            self.release()
            rows = np.stack(pending.vectors).astype("<f4")
            pending.sink(
                {
                    "type": "embeddings",
                    "vectors": rows.tobytes(),  # bytes cross a process boundary; numpy arrays would not
                    "count": int(rows.shape[0]),
                    "dimensions": int(rows.shape[1]),
                    "prompt_tokens": pending.prompt_tokens,
                }
            )

    def cancel(self, request_id: str) -> None:
        for pending in self.pending:
            if pending.request.request_id == request_id:
                self.pending.remove(pending)
                self.release()
                pending.sink(EngineError("Cancelled.", status=499, code="cancelled").as_event())
                return

    def fail_all(self, error: EngineError) -> None:
        for pending in list(self.pending):
            self.pending.remove(pending)
            self.release()
            pending.sink(error.as_event())

    def close(self) -> None:
        self.runtime = None  # type: ignore[assignment]
