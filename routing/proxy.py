"""Serve one request from a cloud target, in the protocol the client spoke, whatever the upstream speaks."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any, Protocol

from django.http import JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from audit.services import RequestAudit
from inference.engine.types import FinishEvent
from inference.engine.types import finish_event as engine_finish_event
from inference.errors import OpenAIError, error_body, sse_data
from routing.backends import UpstreamError, UpstreamStream, upstream_call
from routing.models import ProviderCredential
from routing.selectors import Target
from routing.translation.errors import anthropic_error_body, upstream_error_message
from routing.translation.requests import anthropic_request_to_openai, openai_request_to_anthropic
from routing.translation.responses import (
    anthropic_response_to_openai,
    anthropic_usage_counts,
    openai_response_to_anthropic,
    openai_usage_counts,
)
from routing.translation.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

logger = logging.getLogger(__name__)

BACKEND_HEADER = "x-mlxhub-backend"


class ClientProtocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Governance(Protocol):
    """What the /v1 view's bookkeeping offers (inference.api.Governed)."""

    audit: RequestAudit

    def close(
        self, *, status: int, error_type: str = "", finish: FinishEvent | None = None, cancelled: bool = False
    ) -> None: ...


def sse_anthropic(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def finish_event(prompt: int, completion: int, cached: int) -> FinishEvent:
    """What an upstream answer used, in the engine's terms (for the audit row and the limits)."""
    return engine_finish_event("stop", prompt=prompt, completion=completion, cached=cached)


def error_as_openai(exc: UpstreamError) -> OpenAIError:
    return OpenAIError(str(exc), status=exc.status, code=exc.code, param=exc.param)


def stream_error_bytes(protocol: ClientProtocol, *, status: int, message: str, code: str | None) -> bytes:
    if protocol is ClientProtocol.ANTHROPIC:
        return sse_anthropic("error", anthropic_error_body(status=status, message=message))
    return sse_data(error_body(message=message, status=status, code=code, param=None))


def _upstream_body(target: Target, client: ClientProtocol, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    assert target.credential is not None
    upstream_anthropic = target.credential.speaks_anthropic
    if client is ClientProtocol.OPENAI and upstream_anthropic:
        return openai_request_to_anthropic(body, model=target.model)
    if client is ClientProtocol.ANTHROPIC and not upstream_anthropic:
        out = anthropic_request_to_openai(body, model=target.model)
    elif client is ClientProtocol.ANTHROPIC:
        return {**body, "model": target.model}
    else:
        out = {**body, "model": target.model}
        if stream:
            out["stream_options"] = {"include_usage": True}  # for the audit row and the limits, always
    if target.credential.provider == ProviderCredential.Provider.OPENAI:
        out.pop("top_k", None)  # OpenAI refuses the field; compatible servers (vLLM, MLX Hub) honour it
    return out


def event_stream_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """Server-sent events, never cached or buffered by a proxy on the way."""
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def cloud_serve(
    *,
    governed: Governance,
    target: Target,
    client: ClientProtocol,
    body: dict[str, Any],
    requested_model: str,
    stream: bool,
    include_usage: bool,
    text_completion: bool = False,
) -> HttpResponseBase:
    """Raises UpstreamError before anything is sent (the caller falls through or answers the error).

    ``text_completion``: the legacy /v1/completions, relayed as is to OpenAI-shaped upstreams only.
    """
    assert target.credential is not None
    upstream_anthropic = target.credential.speaks_anthropic
    if text_completion and upstream_anthropic:
        raise _unsupported(requested_model, "text completions")
    governed.audit.backend = target.backend
    governed.audit.model_served = target.model
    path = "/messages" if upstream_anthropic else "/completions" if text_completion else "/chat/completions"
    result = await upstream_call(
        target.credential, _upstream_body(target, client, body, stream), path=path, stream=stream
    )
    if isinstance(result, UpstreamStream):
        chunks = _relay(result, governed, client, upstream_anthropic, requested_model, include_usage)
        response: HttpResponseBase = event_stream_response(chunks)
    else:
        if upstream_anthropic:
            counts = anthropic_usage_counts(result.get("usage") or {})
        else:
            counts = openai_usage_counts(result.get("usage"))
        if client is ClientProtocol.OPENAI and upstream_anthropic:
            result = anthropic_response_to_openai(result, model=requested_model, created=int(time.time()))
        elif client is ClientProtocol.ANTHROPIC and not upstream_anthropic:
            result = openai_response_to_anthropic(result, model=requested_model)
        else:
            result["model"] = requested_model
        governed.audit.mark_first_token()
        governed.close(status=200, finish=finish_event(*counts))
        response = JsonResponse(result)
    response[BACKEND_HEADER] = target.backend
    return response


def _unsupported(requested_model: str, what: str) -> OpenAIError:
    return OpenAIError(
        f"The model '{requested_model}' is routed to an Anthropic upstream, which has no {what} endpoint.",
        status=400,
        code="unsupported_backend",
        param="model",
    )


async def cloud_embeddings(
    *, governed: Governance, target: Target, body: dict[str, Any], requested_model: str
) -> HttpResponseBase:
    """Embeddings from an OpenAI-shaped upstream; raises UpstreamError before anything is sent."""
    assert target.credential is not None
    if target.credential.speaks_anthropic:
        raise _unsupported(requested_model, "embeddings")
    governed.audit.backend = target.backend
    governed.audit.model_served = target.model
    result = await upstream_call(target.credential, {**body, "model": target.model}, path="/embeddings", stream=False)
    assert isinstance(result, dict)
    result["model"] = requested_model
    governed.audit.mark_first_token()
    governed.close(status=200, finish=finish_event((result.get("usage") or {}).get("prompt_tokens") or 0, 0, 0))
    return JsonResponse(result)


async def _relay(
    upstream: UpstreamStream,
    governed: Governance,
    client: ClientProtocol,
    upstream_anthropic: bool,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    to_anthropic = OpenAIToAnthropicStream(model=model) if client is ClientProtocol.ANTHROPIC else None
    to_openai = AnthropicToOpenAIStream(model=model, created=int(time.time()), include_usage=include_usage)
    counts = (0, 0, 0)
    status, error_type = 200, ""
    complete = False
    try:
        async for event, data in upstream.events():
            if data is None:  # OpenAI's [DONE]
                complete = True
                continue
            if data.get("type") == "message_stop":
                complete = True
            if "error" in data and event in ("error", "message"):
                message, code, _ = upstream_error_message(data)
                status, error_type = 502, code or "upstream_error"
                yield stream_error_bytes(client, status=502, message=message, code=code)
                break
            if upstream_anthropic:
                if event == "ping":
                    continue
                if data.get("type") == "content_block_delta":
                    governed.audit.mark_first_token()
                if data.get("type") == "message_start":
                    counts = anthropic_usage_counts((data.get("message") or {}).get("usage") or {})
                elif data.get("type") == "message_delta":
                    counts = (counts[0], (data.get("usage") or {}).get("output_tokens") or counts[1], counts[2])
                if client is ClientProtocol.ANTHROPIC:
                    yield sse_anthropic(
                        event,
                        {**data, "message": {**data["message"], "model": model}}
                        if data.get("type") == "message_start"
                        else data,
                    )
                else:
                    for chunk in to_openai.feed(event, data):
                        yield sse_data(chunk)
                continue
            if data.get("usage"):
                counts = openai_usage_counts(data["usage"])
            choices = data.get("choices") or []
            if any((choice.get("delta") or {}).get("content") or choice.get("text") for choice in choices):
                governed.audit.mark_first_token()
            if to_anthropic is not None:
                for name, payload in to_anthropic.feed(data):
                    yield sse_anthropic(name, payload)
            elif data.get("choices") or include_usage:
                data["model"] = model
                if not include_usage:
                    data.pop("usage", None)
                yield sse_data(data)
        else:
            if not complete:
                # The connection closed cleanly but the answer is cut short: an error, never a quiet end.
                raise UpstreamError(
                    "The upstream stream ended before the answer was complete.",
                    status=502,
                    code="upstream_error",
                    retryable=False,
                )
            if to_anthropic is not None:
                for name, payload in to_anthropic.finish():
                    yield sse_anthropic(name, payload)
        if client is ClientProtocol.OPENAI:
            yield b"data: [DONE]\n\n"
    except UpstreamError as exc:
        # Bytes have reached the client: no retry, no fallback; the stream ends with an error event.
        status, error_type = exc.status, exc.code or "upstream_error"
        logger.warning("upstream stream failed: %s", exc)
        yield stream_error_bytes(client, status=exc.status, message=str(exc), code=exc.code)
    except (asyncio.CancelledError, GeneratorExit):
        status, error_type = 499, "client_disconnected"
        raise
    finally:
        await upstream.aclose()
        governed.close(status=status, error_type=error_type, finish=finish_event(*counts), cancelled=status == 499)
