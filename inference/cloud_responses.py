"""POST /v1/responses from a cloud target: relayed to OpenAI, translated to chat completions for the others.

OpenAI (``provider == "openai"``) speaks Responses: the body goes to ``{base_url}/responses`` as the client
sent it (the model renamed, a ``previous_response_id`` expanded from MLX Hub's store), and its events come
back as they are. OpenAI-compatible servers and Anthropic get a chat-completions body (Anthropic's then
translated to Messages, as /v1/chat/completions does), and their answer or stream is turned into Responses
objects and events by the same builder that renders local answers.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.http import JsonResponse
from django.http.response import HttpResponseBase

from inference.engine.types import FinishEvent, finish_event
from inference.formats.responses import sse_frames
from inference.services import CLIENT_LEFT, Outcome, RequestLedger
from inference.serving import LedgeredBody, Serving, event_stream_response
from routing.backends import UpstreamError, UpstreamStream, upstream_call
from routing.models import ProviderCredential
from routing.selectors import Target
from routing.translation.errors import upstream_error_message
from routing.translation.requests import openai_request_to_anthropic
from routing.translation.responses import anthropic_response_to_openai
from routing.translation.responses_api import (
    TERMINAL_TYPES,
    ChatToResponsesStream,
    ResponsesBuilder,
    chat_response_to_responses,
    response_error_code,
    responses_request_to_chat,
    responses_usage_counts,
)
from routing.translation.streams import AnthropicToOpenAIStream

logger = logging.getLogger(__name__)
_closing: set[asyncio.Future[None]] = set()

Json = dict[str, Any]
Saver = Callable[[Json], Awaitable[None]]
FIRST_TOKEN_TYPES = frozenset(
    {"response.output_text.delta", "response.function_call_arguments.delta", "response.output_item.added"}
)


@dataclass
class CloudResponse:
    """One Responses request as a cloud target gets it."""

    body: Json  # the Responses body: input as items (expanded from the store), no previous_response_id
    envelope: Json  # what MLX Hub's response objects echo (translated answers)
    overrides: Json  # what a relayed answer's response objects say instead of the upstream's
    save: Saver  # keeps the final response object (a no-op without the store)
    stream: bool = False
    namespaces: dict[str, str] = field(default_factory=dict)


def _finish(response: Json | None) -> FinishEvent:
    """What an answer used, in the engine's terms (for the ledger)."""
    prompt, completion, cached = responses_usage_counts((response or {}).get("usage"))
    reason = "length" if (response or {}).get("status") == "incomplete" else "stop"
    return finish_event(reason, prompt=prompt, completion=completion, cached=cached)


async def cloud_responses_serve(serving: Serving, target: Target, call: CloudResponse) -> HttpResponseBase:
    """Raises UpstreamError before anything is sent (the caller falls through or answers the error)."""
    assert target.credential is not None
    credential = target.credential
    relay = credential.provider == ProviderCredential.Provider.OPENAI
    if relay:
        upstream_body, path = {**call.body, "model": target.model}, "/responses"
    else:
        chat, call.namespaces = responses_request_to_chat(call.body, model=target.model)
        if credential.speaks_anthropic:
            upstream_body, path = openai_request_to_anthropic(chat, model=target.model), "/messages"
        else:
            upstream_body, path = chat, "/chat/completions"
    result = await upstream_call(credential, upstream_body, path=path, stream=call.stream)
    if isinstance(result, UpstreamStream):
        adapter: Adapter = PassThrough(call.overrides) if relay else Translated(call, credential.speaks_anthropic)
        return event_stream_response(ResponsesRelay(serving.ledger, result, adapter, call.save))
    if relay:
        response = {**result, **call.overrides}
    else:
        if credential.speaks_anthropic:
            result = anthropic_response_to_openai(result, model=target.model, created=int(time.time()))
        builder = ResponsesBuilder(envelope=call.envelope, namespaces=call.namespaces)
        response = chat_response_to_responses(result, builder)
    serving.ledger.audit.mark_first_token()
    serving.ledger.record(Outcome(200), _finish(response))
    await call.save(response)
    return JsonResponse(response)


# ---- streams ------------------------------------------------------------------------------------------------


class Adapter(ABC):
    """Upstream (event, data) pairs in, Responses events out; ``end`` after the upstream's last event."""

    complete = False  # the upstream said its answer was whole

    def begin(self) -> list[Json]:
        return []

    @abstractmethod
    def feed(self, event: str, data: Json | None) -> list[Json]: ...

    def end(self) -> list[Json]:
        return []

    @abstractmethod
    def fail(self, *, message: str, code: str | None, status: int) -> list[Json]:
        """The events that end a stream the upstream broke."""


class PassThrough(Adapter):
    """OpenAI's own events, as they come (the response objects say what MLX Hub did: model, store)."""

    def __init__(self, overrides: Json) -> None:
        self.overrides = overrides
        self.snapshot: Json | None = None  # the last response object seen, for a failure of our own
        self.sequence = -1

    def feed(self, event: str, data: Json | None) -> list[Json]:
        if data is None:
            return []
        if isinstance(data.get("response"), dict):
            data = {**data, "response": {**data["response"], **self.overrides}}
            self.snapshot = data["response"]
        if isinstance(data.get("sequence_number"), int):
            self.sequence = data["sequence_number"]
        if data.get("type") in TERMINAL_TYPES:
            self.complete = True
        return [data]

    def fail(self, *, message: str, code: str | None, status: int) -> list[Json]:
        self.sequence += 1
        error = {"type": "error", "sequence_number": self.sequence, "code": code, "message": message, "param": None}
        if self.snapshot is None:
            return [error]
        failure = {"code": response_error_code(code, status), "message": message}
        failed = {**copy.deepcopy(self.snapshot), "status": "failed", "error": failure}
        self.sequence += 1
        return [error, {"type": "response.failed", "sequence_number": self.sequence, "response": failed}]


class Translated(Adapter):
    """Chat-completion chunks (or Anthropic's events, through chat chunks) made into Responses events."""

    def __init__(self, call: CloudResponse, anthropic: bool) -> None:
        self.builder = ResponsesBuilder(envelope=call.envelope, namespaces=call.namespaces)
        self.stream = ChatToResponsesStream(self.builder)
        self.from_anthropic = (
            AnthropicToOpenAIStream(model=str(call.envelope["model"]), created=0, include_usage=True)
            if anthropic
            else None
        )

    def begin(self) -> list[Json]:
        return self.stream.start()

    def feed(self, event: str, data: Json | None) -> list[Json]:
        if data is None:  # OpenAI's [DONE]
            self.complete = True
            return []
        if "error" in data and event in ("error", "message"):
            message, code, _ = upstream_error_message(data)
            raise UpstreamError(message, status=502, code=code or "upstream_error", retryable=False)
        if self.from_anthropic is None:
            return self.stream.feed(data)
        if data.get("type") == "message_stop":
            self.complete = True
        return [out for chunk in self.from_anthropic.feed(event, data) for out in self.stream.feed(chunk)]

    def end(self) -> list[Json]:
        return self.stream.finish()

    def fail(self, *, message: str, code: str | None, status: int) -> list[Json]:
        return self.builder.fail(message=message, code=code, status=status)


class ResponsesRelay(LedgeredBody):
    """An upstream's stream as Responses events; the final response is kept before the client sees it."""

    def __init__(self, ledger: RequestLedger, upstream: UpstreamStream, adapter: Adapter, save: Saver) -> None:
        self.upstream = upstream
        self.adapter = adapter
        self.save = save
        self.outcome = Outcome(200)
        self.final: Json | None = None  # the last response object, for the ledger's counts
        super().__init__(ledger)

    async def _settled(self, events: list[Json]) -> list[Json]:
        """Note what the events say for the ledger; keep a final response before it is sent."""
        for event in events:
            kind = event.get("type")
            if kind in FIRST_TOKEN_TYPES:
                self.ledger.audit.mark_first_token()
            elif kind in TERMINAL_TYPES:
                response = event.get("response")
                self.final = response if isinstance(response, dict) else None
                if kind != "response.failed":
                    await self.save(event["response"])
            if kind in ("error", "response.failed"):
                self.outcome = Outcome(502, "upstream_error")
        return events

    async def produce(self) -> AsyncIterator[bytes]:
        adapter = self.adapter
        try:
            yield sse_frames(adapter.begin())
            async for event, data in self.upstream.events():
                if event == "ping":
                    continue
                yield sse_frames(await self._settled(adapter.feed(event, data)))
            if not adapter.complete:
                # The connection closed cleanly but the answer is cut short: an error, never a quiet end.
                raise UpstreamError(
                    "The upstream stream ended before the answer was complete.",
                    status=502,
                    code="upstream_error",
                    retryable=False,
                )
            yield sse_frames(await self._settled(adapter.end()))
        except UpstreamError as exc:
            # Bytes have reached the client: no retry, no fallback; the stream ends with error and failed.
            logger.warning("upstream stream failed: %s", exc)
            self.outcome = Outcome(exc.status, exc.code or "upstream_error")
            yield sse_frames(adapter.fail(message=str(exc), code=exc.code, status=exc.status))
        except (asyncio.CancelledError, GeneratorExit):
            self.outcome = CLIENT_LEFT
            raise
        finally:
            await self.upstream.aclose()
            self.ledger.record(self.outcome, _finish(self.final))
            self.ledger.close()

    def release_unstarted(self) -> None:
        # On the loop: the upstream connection goes back, the request is settled as the client's leaving.
        closing = asyncio.ensure_future(self.upstream.aclose())
        _closing.add(closing)  # held until done: the loop keeps only weak references to tasks
        closing.add_done_callback(_closing.discard)
        self.ledger.record(CLIENT_LEFT)
        self.ledger.close()
