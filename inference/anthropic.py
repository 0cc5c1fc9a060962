"""The Anthropic Messages API on /v1: POST /v1/messages and /v1/messages/count_tokens.

Local models answer through the same engine path as chat completions: the body is
translated to an OpenAI chat request, served, and the answer (or its stream) is
translated back, so there is one local serving path to keep right.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from pydantic import ValidationError

from catalog.models import ModelKind, Profile
from inference.api import (
    ChatFormat,
    Governed,
    _serve,
    api,
    cloud_cost,
    route_for,
    serve_routed,
)
from inference.errors import OpenAIError, param_from_loc
from inference.schemas import AnthropicCountTokensRequest, AnthropicMessagesRequest, ChatCompletionRequest
from inference.services import chat_images, chat_request, require_kind
from routing.backends import upstream_call
from routing.proxy import BACKEND_HEADER, ClientProtocol, cloud_serve, sse_anthropic
from routing.selectors import Target
from routing.translation.errors import anthropic_error_body
from routing.translation.requests import anthropic_request_to_openai
from routing.translation.responses import openai_response_to_anthropic
from routing.translation.streams import OpenAIToAnthropicStream

logger = logging.getLogger(__name__)


def _chat_payload(body: dict[str, Any], model: str) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(anthropic_request_to_openai(body, model=model))
    except ValidationError as exc:
        first = exc.errors()[0]
        param = param_from_loc(list(first.get("loc", [])))
        raise OpenAIError(f"Invalid value for '{param}': {first.get('msg')}", param=param) from exc


async def _to_anthropic_stream(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """OpenAI SSE bytes from the local serving path → Anthropic events (heartbeats become pings)."""
    translator = OpenAIToAnthropicStream(model=model)
    errored = False
    try:
        async for piece in chunks:
            if piece.startswith(b":"):
                yield sse_anthropic("ping", {"type": "ping"})
                continue
            for line in piece.split(b"\n"):
                if errored or not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    error = data["error"]
                    status = 504 if error.get("code") == "timeout" else 500
                    yield sse_anthropic("error", anthropic_error_body(status=status, message=error.get("message", "")))
                    # Keep draining: the serving path then ends on its own and records the real status.
                    errored = True
                    continue
                for event, payload in translator.feed(data):
                    yield sse_anthropic(event, payload)
        if not errored:
            for event, payload in translator.finish():
                yield sse_anthropic(event, payload)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # frees the engine slot when the client left


@api.post("/messages", summary="Create a message (Anthropic Messages API)")
async def messages(request: HttpRequest, payload: AnthropicMessagesRequest) -> HttpResponseBase:
    governed = Governed(request, endpoint="messages", model=payload.model, streamed=payload.stream)
    route = await route_for(payload.model, governed.api_key)
    body = payload.model_dump(exclude_none=True)
    logger.info("message model=%s stream=%s", payload.model, payload.stream)

    async def local(profile: Profile) -> HttpResponseBase:
        require_kind(profile, "chat completions")
        chat = _chat_payload(body, profile.name)
        generation = chat_request(payload=chat, profile=profile, request_id=governed.audit.request_id)
        if profile.local_model.kind == ModelKind.VISION:
            generation.images = await chat_images(chat)
        fmt = ChatFormat(payload.model, include_usage=True)
        if payload.stream:
            return await _serve(
                governed,
                generation,
                profile,
                fmt,
                stream_response=True,
                relay=lambda chunks: _to_anthropic_stream(chunks, payload.model),
            )
        answer = await _serve(governed, generation, profile, fmt, stream_response=False)
        assert isinstance(answer, JsonResponse)
        return JsonResponse(openai_response_to_anthropic(json.loads(answer.content), model=payload.model))

    async def cloud(target: Target) -> HttpResponseBase:
        governed.reserve(cloud_cost(body["messages"], payload.max_tokens))
        return await cloud_serve(
            governed=governed,
            target=target,
            client=ClientProtocol.ANTHROPIC,
            body=body,
            requested_model=payload.model,
            stream=payload.stream,
            include_usage=True,
        )

    return await serve_routed(governed, route, local=local, cloud=cloud)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _count_local(path: str, messages: list[dict[str, str]]) -> int:
    tokenizer = _tokenizer(path)
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        return len(ids)
    return len(tokenizer.encode("\n".join(message["content"] for message in messages)))


@api.post("/messages/count_tokens", summary="Count the tokens of a message (Anthropic Messages API)")
async def count_tokens(request: HttpRequest, payload: AnthropicCountTokensRequest) -> HttpResponseBase:
    governed = Governed(request, endpoint="messages.count_tokens", model=payload.model, streamed=False)
    route = await route_for(payload.model, governed.api_key)
    body = payload.model_dump(exclude_none=True)
    governed.reserve(0)  # no tokens are generated, but the request counts against the key's rate

    async def local(profile: Profile) -> HttpResponseBase:
        require_kind(profile, "text completions")  # counted with the text tokenizer and its chat template
        chat = _chat_payload({**body, "max_tokens": 1}, profile.name)
        generation = chat_request(payload=chat, profile=profile, request_id=governed.audit.request_id)
        assert generation.messages is not None
        count = await sync_to_async(_count_local, thread_sensitive=False)(profile.local_model.path, generation.messages)
        governed.close(status=200)
        return JsonResponse({"input_tokens": count})

    async def cloud(target: Target) -> HttpResponseBase:
        assert target.credential is not None
        if not target.credential.speaks_anthropic:
            raise OpenAIError(
                f"The model '{payload.model}' is served by an OpenAI-shaped provider, which cannot count tokens.",
                code="unsupported_backend",
                param="model",
            )
        answer = await upstream_call(
            target.credential, {**body, "model": target.model}, path="/messages/count_tokens", stream=False
        )
        governed.close(status=200)
        response = JsonResponse(answer)
        response[BACKEND_HEADER] = target.backend
        return response

    return await serve_routed(governed, route, local=local, cloud=cloud)
