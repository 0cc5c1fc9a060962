"""OpenAI's chat completions and text completions: POST /v1/chat/completions and /v1/completions."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import Router

from catalog.models import ModelKind, Profile
from inference.cloud import ClientProtocol, cloud_cost, cloud_serve
from inference.engine.types import GenerationRequest
from inference.engine_requests import chat_request, completion_request, image_urls
from inference.formats.openai import ChatRenderer, CompletionRenderer
from inference.schemas import ChatCompletionRequest, CompletionRequest
from inference.serving import Endpoint, Serving, serve
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.selectors import Target

logger = logging.getLogger(__name__)
router = Router(tags=["OpenAI"])


def _include_usage(payload: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(payload.stream_options and payload.stream_options.include_usage)


class ChatCompletions(Endpoint[ChatCompletionRequest]):
    name = "chat.completions"
    timeout_key = "chat"
    serves = "chat completions"

    @property
    def model(self) -> str:
        return self.payload.model

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        return chat_request(payload=self.payload, profile=profile, trace_id=serving.trace_id)

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        return image_urls(self.payload) if profile.local_model.kind == ModelKind.VISION else []

    def renderer(self) -> ChatRenderer:
        return ChatRenderer(model=self.payload.model, include_usage=_include_usage(self.payload))

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        body = self.payload.model_dump(exclude_none=True)
        max_tokens = self.payload.max_completion_tokens or self.payload.max_tokens
        serving.ledger.reserve(cloud_cost(body["messages"], max_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS))
        return await cloud_serve(
            serving,
            target,
            client=ClientProtocol.OPENAI,
            body=body,
            requested_model=self.payload.model,
            stream=self.payload.stream,
            include_usage=_include_usage(self.payload),
        )


class Completions(Endpoint[CompletionRequest]):
    name = "completions"
    timeout_key = "completions"
    serves = "text completions"

    @property
    def model(self) -> str:
        return self.payload.model

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        return completion_request(payload=self.payload, profile=profile, trace_id=serving.trace_id)

    def renderer(self) -> CompletionRenderer:
        return CompletionRenderer(model=self.payload.model, include_usage=_include_usage(self.payload))

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        # Text completions are a legacy endpoint: OpenAI-shaped upstreams serve them, Anthropic's API has none.
        body = self.payload.model_dump(exclude_none=True)
        serving.ledger.reserve(cloud_cost(body["prompt"], self.payload.max_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS))
        return await cloud_serve(
            serving,
            target,
            client=ClientProtocol.OPENAI,
            body=body,
            requested_model=self.payload.model,
            stream=self.payload.stream,
            include_usage=_include_usage(self.payload),
            text_completion=True,
        )


@router.post("/chat/completions", summary="Create a chat completion")
async def chat_completions(request: HttpRequest, payload: ChatCompletionRequest) -> HttpResponseBase:
    logger.info("chat completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    return await serve(request, ChatCompletions(payload))


@router.post("/completions", summary="Create a completion")
async def completions(request: HttpRequest, payload: CompletionRequest) -> HttpResponseBase:
    logger.info("completion model=%s stream=%s user=%s", payload.model, payload.stream, payload.user or "-")
    return await serve(request, Completions(payload))
