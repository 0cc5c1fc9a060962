"""A request of several choices (``n`` > 1, several prompts, ``echo``) as rows of the batch.

Each choice runs as a request of its own (its own row, sampler and seed, ``seed + i``); ``ChoiceGroup``
joins their events into the one stream the client reads: every event tagged with its choice, each
choice's finish sent as a ``choice_end``, and one ``finish`` after the last with the usage of them all
(each prompt counted once, as OpenAI does).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from inference.engine.types import (
    EngineEvent,
    EventSink,
    FinishEvent,
    GenerationRequest,
    SamplingParams,
    finish_event,
)

SEED_RANGE = 1 << 64


def is_grouped(request: GenerationRequest) -> bool:
    return request.n > 1 or request.prompts is not None or request.echo


def choice_request(request: GenerationRequest, *, prompt: int, index: int, max_tokens: int) -> GenerationRequest:
    """Choice ``index`` (of all the request's) as a request of one choice for prompt ``prompt``."""
    sampling: SamplingParams = request.sampling
    if sampling.seed is not None:
        sampling = dataclasses.replace(sampling, seed=(sampling.seed + index) % SEED_RANGE)
    fields: dict[str, Any] = {"prompts": None, "n": 1, "echo": False, "sampling": sampling, "max_tokens": max_tokens}
    fields["request_id"] = f"{request.request_id}.{index}"
    if request.prompts is not None:
        item = request.prompts[prompt]
        fields["prompt"], fields["prompt_tokens"] = (item, None) if isinstance(item, str) else (None, list(item))
    return dataclasses.replace(request, **fields)


class ChoiceGroup:
    """The choices of one request, joined into its sink; events wait until the group has started."""

    def __init__(self, request: GenerationRequest, sink: EventSink) -> None:
        self.request_id = request.request_id
        self.sink = sink
        self.total = request.choices
        self.members: list[str] = []  # the request ids of the choices admitted to the batch
        self.running = 0  # members not ended yet
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.tokens: dict[int, int] = {}
        self.reasoning: dict[int, int] = {}  # each choice's reasoning tokens (a thinking model's)
        self.reasons: list[str] = []
        self.started = False
        self.failed = False
        self._held: list[EngineEvent] = []

    def _emit(self, event: EngineEvent) -> None:
        if self.started:
            self.sink(event)
        else:
            self._held.append(event)

    def start(self) -> None:
        self.started = True
        self.sink({"type": "accepted", "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens})
        held, self._held = self._held, []
        for event in held:
            self.sink(event)

    def end_choice(self, choice: int, finish: FinishEvent) -> None:
        self.tokens[choice] = finish["completion_tokens"]
        self.reasoning[choice] = finish.get("reasoning_tokens", 0)
        self.reasons.append(finish["finish_reason"])
        end = {**finish, "type": "choice_end", "choice": choice}
        for name in ("prompt_tokens", "cached_tokens"):
            end.pop(name, None)
        self._emit(cast(EngineEvent, end))
        if len(self.reasons) == self.total:
            reason = "cancelled" if "cancelled" in self.reasons else self.reasons[-1]
            done = finish_event(
                reason, prompt=self.prompt_tokens, completion=sum(self.tokens.values()), cached=self.cached_tokens
            )
            done["choices"] = self.total
            if any(self.reasoning.values()):
                done["reasoning_tokens"] = sum(self.reasoning.values())
            self._emit(done)

    def member(self, choice: int) -> EventSink:
        def sink(event: EngineEvent) -> None:
            if self.failed or event["type"] == "accepted":  # the group says accepted once, for all
                return
            if event["type"] == "error":
                self.failed = True
                self._emit(event)
            elif event["type"] == "finish":
                self.end_choice(choice, event)
            else:
                if event["type"] == "delta":
                    self.tokens[choice] = event["tokens"]
                    event = {**event, "tokens": sum(self.tokens.values())}
                self._emit(cast(EngineEvent, {**event, "choice": choice}))

        return sink
