"""POST /v1/embeddings: local embedding models through the engine, or a routed OpenAI-shaped upstream."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router

from catalog.models import Profile
from inference.cloud import cloud_embeddings
from inference.engine.types import EmbeddingRequest, finish_event
from inference.engine_requests import embedding_cost, embedding_request
from inference.errors import OpenAIError
from inference.formats.openai import EmbeddingsRenderer
from inference.schemas import EmbeddingsRequest
from inference.services import Outcome
from inference.serving import Endpoint, Serving, admit, collect, serve
from routing.selectors import Target

router = Router(tags=["OpenAI"])


class Embeddings(Endpoint[EmbeddingsRequest]):
    name = "embeddings"
    timeout_key = "embeddings"
    serves = "embeddings"

    @property
    def model(self) -> str:
        return self.payload.model

    @property
    def streamed(self) -> bool:
        return False

    def inputs(self) -> list[str | list[int]]:
        try:
            return self.payload.inputs()
        except ValueError as exc:
            raise OpenAIError(str(exc), param="input") from exc

    def engine_request(self, profile: Profile, serving: Serving) -> EmbeddingRequest:
        return embedding_request(inputs=self.inputs(), profile=profile, trace_id=serving.trace_id)

    async def local(self, serving: Serving, profile: Profile) -> HttpResponseBase:
        stream, _ = await admit(self, serving, profile)
        result = (await collect(serving, stream))[-1]
        assert result["type"] == "embeddings"
        serving.ledger.audit.mark_first_token()
        renderer = EmbeddingsRenderer(
            model=self.payload.model, encoding_format=self.payload.encoding_format, dimensions=self.payload.dimensions
        )
        body = renderer.body(result)
        serving.ledger.record(Outcome(200), finish_event("stop", prompt=result["prompt_tokens"], completion=0))
        return JsonResponse(body)

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        serving.ledger.reserve(embedding_cost(self.inputs()))
        return await cloud_embeddings(
            serving, target, body=self.payload.model_dump(exclude_none=True), requested_model=self.payload.model
        )


@router.post("/embeddings", summary="Create embeddings")
async def embeddings(request: HttpRequest, payload: EmbeddingsRequest) -> HttpResponseBase:
    return await serve(request, Embeddings(payload))
