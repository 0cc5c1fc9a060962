"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens.

Local models answer from the engine's events directly (``inference.formats.anthropic``);
cloud targets get the body as it came, or translated for an OpenAI-shaped upstream.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router

from catalog.models import ModelKind, Profile
from inference.cloud import ClientProtocol, cloud_cost, cloud_serve
from inference.conversations import anthropic_conversation
from inference.engine.types import EngineError, GenerationRequest
from inference.engine_requests import check_image_count, fetch_images, model_spec_for, require_kind, sampling_params
from inference.errors import OpenAIError
from inference.formats.anthropic import MessagesRenderer
from inference.runtime import engine_client
from inference.schemas.anthropic import AnthropicCountTokensRequest, AnthropicMessagesRequest
from inference.services import Outcome
from inference.serving import Endpoint, Serving, engine_failure, serve
from inference.thinking import anthropic_thinking
from inference.tooling import anthropic_tool_plan
from routing.backends import upstream_call
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.selectors import Target

logger = logging.getLogger(__name__)
router = Router(tags=["Anthropic"])


def engine_request(
    payload: AnthropicCountTokensRequest, profile: Profile, serving: Serving, *, vision: bool
) -> tuple[GenerationRequest, list[tuple[str, str]]]:
    payload.refuse_fields()
    conversation = anthropic_conversation(payload, vision=vision)
    plan = anthropic_tool_plan(payload)
    thinking = anthropic_thinking(payload, max_tokens=getattr(payload, "max_tokens", None))
    request = GenerationRequest(
        trace_id=serving.trace_id,
        model=model_spec_for(profile),
        messages=conversation.with_system_prompt(profile.system_prompt),
        tools=plan.tools,
        grammar=plan.grammar,
        max_tool_calls=plan.max_calls,
        template_kwargs=thinking.template_kwargs,
        thinking=thinking.thinking,
        thinking_budget=thinking.budget,
        prefill=True,  # a final assistant message is the start of the answer, as on Anthropic's API
    )
    return request, conversation.images


class Messages(Endpoint[AnthropicMessagesRequest]):
    name = "messages"
    timeout_key = "chat"
    serves = "chat completions"
    images: list[tuple[str, str]] = []

    @property
    def model(self) -> str:
        return self.payload.model

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        vision = profile.local_model.kind == ModelKind.VISION
        request, self.images = engine_request(self.payload, profile, serving, vision=vision)
        request.max_tokens = self.payload.max_tokens
        request.stop = list(self.payload.stop_sequences or [])
        request.sampling = sampling_params(self.payload, profile)
        return request

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        return self.images

    def renderer(self) -> MessagesRenderer:
        thinking = self.payload.thinking is not None and self.payload.thinking.type != "disabled"
        return MessagesRenderer(model=self.payload.model, thinking=thinking)

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        body = self.payload.model_dump(exclude_none=True)
        serving.ledger.reserve(cloud_cost(body["messages"], self.payload.max_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS))
        return await cloud_serve(
            serving,
            target,
            client=ClientProtocol.ANTHROPIC,
            body=body,
            requested_model=self.payload.model,
            stream=bool(self.payload.stream),
            include_usage=True,
        )


class CountTokens(Endpoint[AnthropicCountTokensRequest]):
    name = "messages.count_tokens"
    timeout_key = "chat"
    serves = "chat completions"  # text models by their tokenizer and template, vision ones by their processor
    images: list[tuple[str, str]] = []

    @property
    def model(self) -> str:
        return self.payload.model

    @property
    def streamed(self) -> bool:
        return False

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        request, self.images = engine_request(
            self.payload, profile, serving, vision=profile.local_model.kind == ModelKind.VISION
        )
        return request

    async def local(self, serving: Serving, profile: Profile) -> HttpResponseBase:
        require_kind(profile, self.serves)
        request = self.engine_request(profile, serving)
        check_image_count(self.images)
        serving.ledger.reserve(0)  # no tokens are generated, but the request counts against the key's rate
        if self.images:  # after the reservation, as for a generation: a refused caller fetches nothing
            request.images = await fetch_images(self.images)
        try:
            count = await engine_client().count_tokens(request)
        except EngineError as exc:  # a template that refuses these messages: the client's error, not ours
            raise engine_failure(exc) from exc
        serving.ledger.record(Outcome(200))
        return JsonResponse({"input_tokens": count})

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        assert target.credential is not None
        if not target.credential.speaks_anthropic:
            raise OpenAIError(
                f"The model '{self.model}' is served by an OpenAI-shaped provider, which cannot count tokens.",
                code="unsupported_backend",
                param="model",
            )
        serving.ledger.reserve(0)
        body = {**self.payload.model_dump(exclude_none=True), "model": target.model}
        answer = await upstream_call(target.credential, body, path="/messages/count_tokens", stream=False)
        serving.ledger.record(Outcome(200))
        return JsonResponse(answer)


@router.post("/messages", summary="Create a message (Anthropic Messages API)")
async def messages(request: HttpRequest, payload: AnthropicMessagesRequest) -> HttpResponseBase:
    logger.info("message model=%s stream=%s", payload.model, payload.stream)
    return await serve(request, Messages(payload))


@router.post("/messages/count_tokens", summary="Count the tokens of a message (Anthropic Messages API)")
async def count_tokens(request: HttpRequest, payload: AnthropicCountTokensRequest) -> HttpResponseBase:
    return await serve(request, CountTokens(payload))
