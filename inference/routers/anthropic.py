"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens.

Local models answer from the engine's events directly (``inference.formats.anthropic``);
cloud targets get the body as it came, or translated for an OpenAI-shaped upstream.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router

from catalog.models import ModelKind, Profile
from inference.cloud import ClientProtocol, cloud_cost, cloud_serve
from inference.engine.types import GenerationRequest
from inference.engine_requests import model_spec_for, require_kind, sampling_params
from inference.errors import OpenAIError
from inference.formats.anthropic import MessagesRenderer
from inference.runtime import engine_client
from inference.schemas import AnthropicCountTokensRequest, AnthropicMessagesRequest
from inference.services import Outcome
from inference.serving import Endpoint, Serving, serve
from routing.backends import upstream_call
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.selectors import Target

logger = logging.getLogger(__name__)
router = Router(tags=["Anthropic"])


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _image_url(block: dict[str, Any]) -> str:
    source = block.get("source") or {}
    return str(source.get("url") or f"data:{source.get('media_type')};base64,{source.get('data')}")


def engine_messages(payload: AnthropicCountTokensRequest, *, vision: bool) -> list[dict[str, Any]]:
    """The conversation as the engine renders it; tool blocks are refused (not served locally yet)."""
    if payload.tools:
        raise OpenAIError("Tool calling is not supported by local models yet.", param="tools")
    messages: list[dict[str, Any]] = []
    system = "\n".join(block.get("text", "") for block in _blocks(payload.system) if block.get("type") == "text")
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(payload.messages):
        parts: list[dict[str, Any]] = []
        for block_index, block in enumerate(_blocks(message.content)):
            kind = block.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "image" and vision:
                parts.append({"type": "image"})
            elif kind == "image":
                raise OpenAIError(
                    "Image inputs are not supported by this model.", param=f"messages[{index}].content[{block_index}]"
                )
            else:
                raise OpenAIError(
                    "Tool calling is not supported by local models yet.",
                    param=f"messages[{index}].content[{block_index}]",
                )
        if any(part["type"] == "image" for part in parts):
            messages.append({"role": message.role, "content": parts})
        else:
            messages.append({"role": message.role, "content": "".join(part["text"] for part in parts)})
    return messages


def image_urls(payload: AnthropicCountTokensRequest) -> list[tuple[str, str]]:
    return [
        (_image_url(block), f"messages[{index}].content[{block_index}].source")
        for index, message in enumerate(payload.messages)
        for block_index, block in enumerate(_blocks(message.content))
        if block.get("type") == "image"
    ]


class Messages(Endpoint[AnthropicMessagesRequest]):
    name = "messages"
    timeout_key = "chat"
    serves = "chat completions"

    @property
    def model(self) -> str:
        return self.payload.model

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        messages = engine_messages(self.payload, vision=profile.local_model.kind == ModelKind.VISION)
        if profile.system_prompt and not any(message["role"] == "system" for message in messages):
            messages.insert(0, {"role": "system", "content": profile.system_prompt})
        return GenerationRequest(
            trace_id=serving.trace_id,
            model=model_spec_for(profile),
            messages=messages,
            max_tokens=self.payload.max_tokens,
            stop=list(self.payload.stop_sequences or []),
            sampling=sampling_params(self.payload, profile),
        )

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        return image_urls(self.payload) if profile.local_model.kind == ModelKind.VISION else []

    def renderer(self) -> MessagesRenderer:
        return MessagesRenderer(model=self.payload.model)

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        body = self.payload.model_dump(exclude_none=True)
        serving.ledger.reserve(cloud_cost(body["messages"], self.payload.max_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS))
        return await cloud_serve(
            serving,
            target,
            client=ClientProtocol.ANTHROPIC,
            body=body,
            requested_model=self.payload.model,
            stream=self.payload.stream,
            include_usage=True,
        )


class CountTokens(Endpoint[AnthropicCountTokensRequest]):
    name = "messages.count_tokens"
    timeout_key = "chat"
    serves = "text completions"  # counted with the text tokenizer and its chat template

    @property
    def model(self) -> str:
        return self.payload.model

    @property
    def streamed(self) -> bool:
        return False

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        messages = engine_messages(self.payload, vision=False)
        if profile.system_prompt and not any(message["role"] == "system" for message in messages):
            messages.insert(0, {"role": "system", "content": profile.system_prompt})
        return GenerationRequest(trace_id=serving.trace_id, model=model_spec_for(profile), messages=messages)

    async def local(self, serving: Serving, profile: Profile) -> HttpResponseBase:
        require_kind(profile, self.serves)
        request = self.engine_request(profile, serving)
        serving.ledger.reserve(0)  # no tokens are generated, but the request counts against the key's rate
        count = await engine_client().count_tokens(request)
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
