"""Serving one request from a cloud target, in the protocol the client spoke, whatever the upstream speaks."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from django.http import JsonResponse
from django.http.response import HttpResponseBase

from inference.engine.types import finish_event
from inference.errors import OpenAIError, error_body
from inference.formats.anthropic import sse_event
from inference.formats.openai import sse_data
from inference.services import CLIENT_LEFT, Outcome, RequestLedger
from inference.serving import LedgeredBody, Serving, event_stream_response
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
_closing: set[asyncio.Future[None]] = set()


class ClientProtocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def cloud_cost(messages: Any, max_tokens: int | None, default_max_tokens: int) -> int:
    """Bytes of the messages bound their tokens (as for local models); no max_tokens: the default."""
    return len(json.dumps(messages).encode()) + (max_tokens or default_max_tokens)


def stream_error_bytes(protocol: ClientProtocol, *, status: int, message: str, code: str | None) -> bytes:
    if protocol is ClientProtocol.ANTHROPIC:
        return sse_event("error", anthropic_error_body(status=status, message=message))
    return sse_data(error_body(message=message, status=status, code=code, param=None))


def unsupported(requested_model: str, what: str) -> OpenAIError:
    return OpenAIError(
        f"The model '{requested_model}' is routed to an Anthropic upstream, which has no {what} endpoint.",
        status=400,
        code="unsupported_backend",
        param="model",
    )


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


async def cloud_serve(
    serving: Serving,
    target: Target,
    *,
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
        raise unsupported(requested_model, "text completions")
    path = "/messages" if upstream_anthropic else "/completions" if text_completion else "/chat/completions"
    result = await upstream_call(
        target.credential, _upstream_body(target, client, body, stream), path=path, stream=stream
    )
    if isinstance(result, UpstreamStream):
        relay = RelayStream(serving.ledger, result, client, upstream_anthropic, requested_model, include_usage)
        return event_stream_response(relay)
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
    serving.ledger.audit.mark_first_token()
    serving.ledger.record(Outcome(200), _finish(*counts))
    return JsonResponse(result)


async def cloud_embeddings(
    serving: Serving, target: Target, *, body: dict[str, Any], requested_model: str
) -> HttpResponseBase:
    """Embeddings from an OpenAI-shaped upstream; raises UpstreamError before anything is sent."""
    assert target.credential is not None
    if target.credential.speaks_anthropic:
        raise unsupported(requested_model, "embeddings")
    result = await upstream_call(target.credential, {**body, "model": target.model}, path="/embeddings", stream=False)
    assert isinstance(result, dict)
    result["model"] = requested_model
    serving.ledger.audit.mark_first_token()
    serving.ledger.record(Outcome(200), _finish((result.get("usage") or {}).get("prompt_tokens") or 0, 0, 0))
    return JsonResponse(result)


def _finish(prompt: int, completion: int, cached: int) -> Any:
    """What an upstream answer used, in the engine's terms (for the audit row and the limits)."""
    return finish_event("stop", prompt=prompt, completion=completion, cached=cached)


class RelayStream(LedgeredBody):
    """An upstream's stream relayed in the client's protocol (translated when the two differ)."""

    def __init__(
        self,
        ledger: RequestLedger,
        upstream: UpstreamStream,
        client: ClientProtocol,
        upstream_anthropic: bool,
        model: str,
        include_usage: bool,
    ) -> None:
        self.upstream = upstream
        self.client = client
        self.upstream_anthropic = upstream_anthropic
        self.model = model
        self.include_usage = include_usage
        super().__init__(ledger)

    async def produce(self) -> AsyncIterator[bytes]:
        ledger, client, model, include_usage = self.ledger, self.client, self.model, self.include_usage
        to_anthropic = OpenAIToAnthropicStream(model=model) if client is ClientProtocol.ANTHROPIC else None
        to_openai = AnthropicToOpenAIStream(model=model, created=int(time.time()), include_usage=include_usage)
        counts = (0, 0, 0)
        outcome = Outcome(200)
        complete = False
        try:
            async for event, data in self.upstream.events():
                if data is None:  # OpenAI's [DONE]
                    complete = True
                    continue
                if data.get("type") == "message_stop":
                    complete = True
                if "error" in data and event in ("error", "message"):
                    message, code, _ = upstream_error_message(data)
                    outcome = Outcome(502, code or "upstream_error")
                    yield stream_error_bytes(client, status=502, message=message, code=code)
                    break
                if self.upstream_anthropic:
                    if event == "ping":
                        continue
                    if data.get("type") == "content_block_delta":
                        ledger.audit.mark_first_token()
                    if data.get("type") == "message_start":
                        counts = anthropic_usage_counts((data.get("message") or {}).get("usage") or {})
                    elif data.get("type") == "message_delta":
                        counts = (counts[0], (data.get("usage") or {}).get("output_tokens") or counts[1], counts[2])
                    if client is ClientProtocol.ANTHROPIC:
                        yield sse_event(
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
                    ledger.audit.mark_first_token()
                if to_anthropic is not None:
                    for name, payload in to_anthropic.feed(data):
                        yield sse_event(name, payload)
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
                        yield sse_event(name, payload)
            if client is ClientProtocol.OPENAI:
                yield b"data: [DONE]\n\n"
        except UpstreamError as exc:
            # Bytes have reached the client: no retry, no fallback; the stream ends with an error event.
            outcome = Outcome(exc.status, exc.code or "upstream_error")
            logger.warning("upstream stream failed: %s", exc)
            yield stream_error_bytes(client, status=exc.status, message=str(exc), code=exc.code)
        except (asyncio.CancelledError, GeneratorExit):
            outcome = CLIENT_LEFT
            raise
        finally:
            await self.upstream.aclose()
            ledger.record(outcome, _finish(*counts))
            ledger.close()

    def release_unstarted(self) -> None:
        # On the loop: the upstream connection goes back, the request is settled as the client's leaving.
        closing = asyncio.ensure_future(self.upstream.aclose())
        _closing.add(closing)  # held until done: the loop keeps only weak references to tasks
        closing.add_done_callback(_closing.discard)
        self.ledger.record(CLIENT_LEFT)
        self.ledger.close()
