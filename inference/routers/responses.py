"""OpenAI's Responses API: POST /v1/responses, and GET / DELETE /v1/responses/{id} when responses are stored.

Stateless by default. With MLXHUB_RESPONSES_STORE=1 an answer is stored for its owner unless the request
says ``store: false``, so ``previous_response_id``, ``item_reference`` and GET / DELETE work; without it,
``previous_response_id`` is a 400 that says how to turn storing on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router
from pydantic import ValidationError

from catalog.models import Profile
from inference.cloud import cloud_cost
from inference.cloud_responses import CloudResponse, Saver, cloud_responses_serve
from inference.engine.client import RequestStream
from inference.engine.types import AcceptedEvent, GenerationRequest
from inference.errors import OpenAIError
from inference.formats.responses import ResponsesRenderer, response_envelope
from inference.responses_requests import responses_choice, responses_conversation, responses_request, responses_tools
from inference.responses_store import (
    stored_item_aget,
    stored_response_acreate,
    stored_response_adelete,
    stored_response_aget,
)
from inference.schemas.responses import InputItem, ResponsesRequest
from inference.services import Outcome
from inference.serving import Endpoint, LocalStream, Serving, admit, collect, event_stream_response, serve
from mlxhub.accounts.callers import Caller
from routing.constants import ANTHROPIC_DEFAULT_MAX_TOKENS
from routing.models import ProviderCredential
from routing.selectors import Target

logger = logging.getLogger(__name__)
router = Router(tags=["Responses"])

Json = dict[str, Any]
STORE_OFF = "Responses are not stored on this server: set MLXHUB_RESPONSES_STORE=1"
# The item types of an earlier turn that the conversation shows again (others, e.g. an upstream's hosted
# tool calls, are relayed back to OpenAI but not shown to other models).
CONVERSATION_KINDS = frozenset({"message", "function_call", "function_call_output", "reasoning"})


def _dump(item: InputItem) -> Json:
    return item.model_dump(by_alias=True, exclude_none=True)


def _not_found(response_id: str) -> OpenAIError:
    return OpenAIError(f"Response with id '{response_id}' not found.", status=404, code="response_not_found")


@dataclass
class Prepared:
    """A request's conversation: the earlier turns (from ``previous_response_id``) and the new input."""

    store: bool  # whether this answer will be stored
    earlier: list[Json] = field(default_factory=list)  # the earlier turns' items, as stored
    new: list[tuple[str, InputItem]] = field(default_factory=list)  # (param, item), references resolved
    expanded: bool = False  # the items differ from the input the client sent

    @property
    def items(self) -> list[tuple[str, InputItem]]:
        """What the model is shown, each with the param a refusal names. Of the earlier turns, the kinds
        a conversation shows (an upstream's hosted tool calls, relayed back to OpenAI, are not)."""
        shown = []
        for index, raw in enumerate(self.earlier):
            try:
                item = InputItem.model_validate(raw)
            except ValidationError:  # an item of a kind MLX Hub never reads (an upstream's own)
                continue
            if item.kind in CONVERSATION_KINDS:
                shown.append((f"previous_response_id.input[{index}]", item))
        return shown + self.new

    @property
    def dumped(self) -> list[Json]:
        """Every item, as stored with the answer and sent to a cloud upstream."""
        return [*self.earlier, *(_dump(item) for _, item in self.new)]


async def responses_prepare(payload: ResponsesRequest, *, caller: Caller) -> Prepared:
    """The store's part of a request, whatever serves it: background refused, the earlier turns of
    ``previous_response_id``, the items that ``item_reference``s name."""
    payload.refuse_background()
    enabled = bool(settings.MLXHUB_RESPONSES_STORE)
    prepared = Prepared(store=enabled and payload.store is not False)
    if payload.previous_response_id is not None:
        if not enabled:
            raise OpenAIError(
                f"{STORE_OFF} to use previous_response_id.", param="previous_response_id", code="store_disabled"
            )
        row = await stored_response_aget(user_id=caller.user.pk, response_id=payload.previous_response_id)
        if row is None:
            raise OpenAIError(
                f"Previous response with id '{payload.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        prepared.earlier = [*row.input_items, *(row.response.get("output") or [])]
        prepared.expanded = True
    items = payload.input_items()
    if not items and payload.previous_response_id is None:
        raise OpenAIError("input is required: a string, or a list of input items.", param="input")
    for index, item in enumerate(items):
        param = f"input[{index}]"
        if item.kind == "item_reference":
            if not enabled:
                raise OpenAIError(f"{STORE_OFF} to use item_reference.", param=f"{param}.type", code="store_disabled")
            found = await stored_item_aget(user_id=caller.user.pk, item_id=item.id or "")
            if found is None:
                raise OpenAIError(f"Item with id '{item.id}' not found.", param=f"{param}.id", code="item_not_found")
            item = InputItem.model_validate(found)
            prepared.expanded = True
        prepared.new.append((param, item))
    return prepared


async def _nothing(response: Json) -> None:
    return None


class StoredStream(LocalStream):
    """A local stream whose final response is stored before the client sees it (so a GET right after the
    stream finds it)."""

    def __init__(
        self,
        serving: Serving,
        stream: RequestStream,
        renderer: ResponsesRenderer,
        accepted: AcceptedEvent,
        save: Saver,
    ) -> None:
        self.responses = renderer
        self.save = save
        self.saved = False
        super().__init__(serving, stream, renderer, accepted)

    async def produce(self) -> AsyncIterator[bytes]:
        # Closed with this body, so a client that leaves still reaches the inner stream's abandon.
        inner = cast(AsyncGenerator[bytes, None], super().produce())
        async with contextlib.aclosing(inner) as frames:
            async for frame in frames:
                final = self.responses.final
                if final is not None and not self.saved:
                    self.saved = True
                    await self.save(final)
                yield frame


class Responses(Endpoint[ResponsesRequest]):
    name = "responses"
    timeout_key = "chat"
    serves = "chat completions"

    def __init__(self, payload: ResponsesRequest) -> None:
        super().__init__(payload)
        self.images: list[tuple[str, str]] = []
        self.namespaces: dict[str, str] = {}
        self.prepared: Prepared | None = None

    @property
    def model(self) -> str:
        return self.payload.model

    async def prepare(self, serving: Serving) -> Prepared:
        if self.prepared is None:  # once, whichever target (or fallback) serves the request
            self.prepared = await responses_prepare(self.payload, caller=serving.ledger.caller)
        return self.prepared

    def envelope(self) -> Json:
        assert self.prepared is not None
        return response_envelope(self.payload, store=self.prepared.store)

    def saver(self, serving: Serving) -> Saver:
        prepared = self.prepared
        if prepared is None or not prepared.store:
            return _nothing
        caller, items = serving.ledger.caller, prepared.dumped

        async def save(response: Json) -> None:
            try:
                await stored_response_acreate(caller=caller, response=response, input_items=items)
            except Exception:  # the answer is decided; never fail it over storing it
                logger.exception("could not store a response")

        return save

    # ---- local --------------------------------------------------------------------------------

    def engine_request(self, profile: Profile, serving: Serving) -> GenerationRequest:
        assert self.prepared is not None, "prepare() runs before admission"
        request, self.images, self.namespaces = responses_request(
            payload=self.payload, items=self.prepared.items, profile=profile, trace_id=serving.trace_id
        )
        return request

    def image_urls(self, profile: Profile) -> list[tuple[str, str]]:
        return self.images

    def renderer(self) -> ResponsesRenderer:
        return ResponsesRenderer(envelope=self.envelope(), namespaces=self.namespaces)

    async def local(self, serving: Serving, profile: Profile) -> HttpResponseBase:
        prepared = await self.prepare(serving)
        stream, accepted = await admit(self, serving, profile)
        renderer = self.renderer()
        save = self.saver(serving)
        if self.streamed:
            if prepared.store:
                return event_stream_response(StoredStream(serving, stream, renderer, accepted, save))
            return event_stream_response(LocalStream(serving, stream, renderer, accepted))
        events = await collect(serving, stream)
        finish = events[-1]
        assert finish["type"] == "finish"
        body = renderer.body(events)
        serving.ledger.record(Outcome(200), finish)
        await save(body)
        return JsonResponse(body)

    # ---- cloud --------------------------------------------------------------------------------

    async def cloud(self, serving: Serving, target: Target) -> HttpResponseBase:
        assert target.credential is not None
        prepared = await self.prepare(serving)
        relay = target.credential.provider == ProviderCredential.Provider.OPENAI
        if not relay:
            # What a chat upstream cannot be given is refused as it is for a local model.
            self.payload.refuse_fields()
            responses_conversation(prepared.items, instructions=self.payload.instructions, vision=True)
            responses_choice(self.payload.tool_choice, responses_tools(self.payload).functions)
        body = self.payload.model_dump(by_alias=True, exclude_none=True)
        body.pop("previous_response_id", None)  # expanded from MLX Hub's store, not the upstream's
        if prepared.expanded or not relay:
            body["input"] = prepared.dumped
        serving.ledger.reserve(cloud_cost(body["input"], self.payload.max_output_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS))
        overrides = {
            "model": self.payload.model,
            "store": prepared.store,
            "previous_response_id": self.payload.previous_response_id,
        }
        call = CloudResponse(
            body=body, envelope=self.envelope(), overrides=overrides, save=self.saver(serving), stream=self.streamed
        )
        return await cloud_responses_serve(serving, target, call)


@router.post("/responses", summary="Create a model response (OpenAI Responses API)")
async def create_response(request: HttpRequest, payload: ResponsesRequest) -> HttpResponseBase:
    logger.info("response model=%s stream=%s", payload.model, payload.stream)
    return await serve(request, Responses(payload))


def _store_reader(request: HttpRequest) -> Caller:
    if not settings.MLXHUB_RESPONSES_STORE:
        raise OpenAIError(f"{STORE_OFF} to store responses and read them back.", status=404, code="store_disabled")
    caller: Caller = request.auth  # type: ignore[attr-defined]
    return caller


@router.get("/responses/{response_id}", summary="Retrieve a stored response")
async def retrieve_response(request: HttpRequest, response_id: str) -> JsonResponse:
    caller = _store_reader(request)
    row = await stored_response_aget(user_id=caller.user.pk, response_id=response_id)
    if row is None:  # another user's response is as absent as one that never was
        raise _not_found(response_id)
    return JsonResponse(row.response)


@router.delete("/responses/{response_id}", summary="Delete a stored response")
async def delete_response(request: HttpRequest, response_id: str) -> JsonResponse:
    caller = _store_reader(request)
    if not await stored_response_adelete(user_id=caller.user.pk, response_id=response_id):
        raise _not_found(response_id)
    return JsonResponse({"id": response_id, "object": "response.deleted", "deleted": True})
