"""Embedding requests through the engine: split across passes when large, shared passes when concurrent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import numpy as np
import pytest

from inference.engine.engine import Engine
from inference.engine.local import InProcessEngineClient
from inference.engine.types import EmbeddingRequest, ModelSpec
from tests.inference.engine_kit import collect, run
from tests.model_builders import minilm_path


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    path = str(minilm_path())
    return {"key": path, "path": path, "context_length": None, "kind": "embedding"}


def rows(event) -> np.ndarray:
    """The event's vectors: bytes of little-endian float32, as they would cross a process boundary."""
    assert isinstance(event["vectors"], bytes)
    return np.frombuffer(event["vectors"], dtype="<f4").reshape(event["count"], event["dimensions"])


def request(spec: ModelSpec, inputs: list[str | list[int]]) -> EmbeddingRequest:
    return EmbeddingRequest(request_id=uuid.uuid4().hex, model=spec, inputs=inputs)


async def test_a_request_larger_than_one_pass_is_split_and_keeps_its_order(make_engine: Callable[..., Engine], spec):
    engine = make_engine(prefill_step=16)  # 64 padded tokens per pass: a few inputs each
    texts: list[str | list[int]] = [f"input number {i} " + "word " * (i % 7) for i in range(40)]

    together = await run(engine, request(spec, texts))
    alone = [await run(engine, request(spec, [text])) for text in texts[:5]]

    assert together.kinds == ["accepted", "embeddings"]
    vectors = rows(together.last)
    assert vectors.shape == (40, 384)
    for index, outcome in enumerate(alone):
        assert np.allclose(vectors[index], rows(outcome.last)[0], atol=1e-5)
    assert engine.stats()["models"][spec["key"]]["batches"] >= 40 * 5 // 64
    assert together.last["prompt_tokens"] == together.events[0]["prompt_tokens"]


async def test_concurrent_requests_are_embedded_in_shared_passes(make_engine: Callable[..., Engine], spec):
    engine = make_engine()
    client = InProcessEngineClient(engine=engine)
    await run(engine, request(spec, ["load the model first"]))
    before = engine.stats()["models"][spec["key"]]["batches"]

    outcomes = await asyncio.gather(*(collect(client.open(request(spec, [f"sentence {i}"]))) for i in range(12)))

    assert all(outcome.last["type"] == "embeddings" for outcome in outcomes)
    assert engine.stats()["models"][spec["key"]]["batches"] - before < 12


async def test_a_text_request_to_an_embedding_model_is_refused_by_kind(make_engine: Callable[..., Engine], spec):
    from inference.engine.types import GenerationRequest

    engine = make_engine()
    refused = await run(engine, GenerationRequest(request_id="x", model=spec, prompt="hello", max_tokens=2))

    assert refused.kinds == ["error"]
    assert refused.last["code"] == "wrong_model_kind"
    assert engine.stats()["in_flight"][spec["key"]] == 0
