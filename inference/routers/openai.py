"""OpenAI's chat completions and text completions: POST /v1/chat/completions and /v1/completions."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from ninja import Router

from catalog.models import Profile
from inference.cloud import ClientProtocol, cloud_cost, cloud_serve
from inference.engine.types import GenerationRequest
from inference.engine_requests import chat_request, completion_request
from inference.formats.openai import ChatRenderer, CompletionRenderer
from inference.schemas.openai import ChatCompletionRequest, CompletionRequest
from inference.serving import Endpoint, Serving, serve
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.selectors import Target

logger = logging.getLogger(__name__)
router = Router(tags=["OpenAI"])


class ChatCompletions(Endpoint[ChatCompletionRequest]):
    name = "chat.completions"
    timeout_key = "chat"
    serves = "chat completions"
    images: list[tuple[str, str]] = []

    @property
    def model(self) -> str:
        return self.payload.model

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        request, self.images = chat_request(payload=self.payload, profile=profile, trace_id=serving.trace_id)
        return request

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        return self.images

    def renderer(self) -> ChatRenderer:
        payload = self.payload
        return ChatRenderer(
            model=payload.model,
            include_usage=payload.include_usage,
            logprobs=bool(payload.logprobs),
            choices=payload.n or 1,
        )

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
            stream=bool(self.payload.stream),
            include_usage=self.payload.include_usage,
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
        payload = self.payload
        prompts = (
            len(payload.prompt)
            if isinstance(payload.prompt, list) and payload.prompt and isinstance(payload.prompt[0], str | list)
            else 1
        )
        renderer = CompletionRenderer(
            model=payload.model,
            include_usage=payload.include_usage,
            logprobs=payload.logprobs is not None,
            choices=(payload.n or 1) * prompts,
        )
        if (payload.best_of or 1) > (payload.n or 1):
            renderer.best_of = (payload.best_of or 1, payload.n or 1)
        return renderer

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
            stream=bool(self.payload.stream),
            include_usage=self.payload.include_usage,
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
