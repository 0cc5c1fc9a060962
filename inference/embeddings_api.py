"""POST /v1/embeddings: local embedding models through the engine, or a routed OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import numpy as np
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from catalog.models import Profile
from inference.api import Governed, _engine_failure, _first_event, _next_event, _open, api, route_for, serve_routed
from inference.engine.types import EmbeddingRequest, FinishEvent
from inference.errors import OpenAIError
from inference.schemas import EmbeddingsRequest
from inference.services import model_spec_for, require_kind
from routing.proxy import BACKEND_HEADER, finish_event
from routing.selectors import Target

logger = logging.getLogger(__name__)
ENDPOINT = "embeddings"


def _inputs(payload: EmbeddingsRequest) -> list[str | list[int]]:
    try:
        return payload.inputs()
    except ValueError as exc:
        raise OpenAIError(str(exc), param="input") from exc


def _cost(inputs: list[str | list[int]]) -> int:
    """Bytes bound the tokens of a string (byte-level tokenizers), plus the two special tokens."""
    return sum((len(item.encode()) if isinstance(item, str) else len(item)) + 2 for item in inputs)


def _shape(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Truncate to ``dimensions`` and L2-normalise again, as OpenAI does for shortened embeddings."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if dimensions > vectors.shape[1]:
        raise OpenAIError(
            f"This model's embeddings have {vectors.shape[1]} dimensions; dimensions must be at most that.",
            param="dimensions",
        )
    shortened = vectors[:, :dimensions]
    norms = np.linalg.norm(shortened, axis=1, keepdims=True)
    return np.asarray(shortened / np.where(norms == 0, 1, norms), dtype=np.float32)


def _encode(vector: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(value) for value in vector]


async def _serve_local(governed: Governed, payload: EmbeddingsRequest, profile: Profile) -> HttpResponseBase:
    require_kind(profile, "embeddings")
    inputs = _inputs(payload)
    governed.reserve(_cost(inputs))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MLXHUB_ENDPOINT_TIMEOUTS.get(ENDPOINT, settings.MLXHUB_REQUEST_TIMEOUT)
    stream = _open(EmbeddingRequest(request_id=governed.audit.request_id, model=model_spec_for(profile), inputs=inputs))
    governed.observe(await _first_event(stream, max(0.0, deadline - loop.time())))
    try:
        event = await _next_event(stream, max(0.0, deadline - loop.time()))
    except asyncio.CancelledError:
        governed.abandon(stream)
        raise
    finally:
        stream.cancel()
    if event is None:
        raise OpenAIError("The request timed out.", status=504, code="timeout")
    if event["type"] == "error":
        raise _engine_failure(event)
    assert event["type"] == "embeddings"
    vectors = _shape(np.stack(event["vectors"]).astype(np.float32), payload.dimensions)
    governed.audit.mark_first_token()
    usage = {"prompt_tokens": event["prompt_tokens"], "total_tokens": event["prompt_tokens"]}
    finish: FinishEvent = finish_event(event["prompt_tokens"], 0, 0)
    governed.close(status=200, finish=finish)
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _encode(vector, payload.encoding_format)}
                for index, vector in enumerate(vectors)
            ],
            "model": payload.model,
            "usage": usage,
        }
    )


@api.post("/embeddings", summary="Create embeddings")
async def embeddings(request: HttpRequest, payload: EmbeddingsRequest) -> HttpResponseBase:
    governed = Governed(request, endpoint=ENDPOINT, model=payload.model, streamed=False)
    route = await route_for(payload.model, governed.api_key)

    async def local(profile: Profile) -> HttpResponseBase:
        return await _serve_local(governed, payload, profile)

    async def cloud(target: Target) -> HttpResponseBase:
        from routing.proxy import cloud_embeddings

        governed.reserve(_cost(_inputs(payload)))
        response = await cloud_embeddings(
            governed=governed, target=target, body=payload.model_dump(exclude_none=True), requested_model=payload.model
        )
        response[BACKEND_HEADER] = target.backend
        return response

    return await serve_routed(governed, route, local=local, cloud=cloud)
