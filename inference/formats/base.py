"""What every protocol's renderer provides to the serving path."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from inference.engine.types import (
    AcceptedEvent,
    ChoiceEndEvent,
    DeltaEvent,
    EngineEvent,
    FinishEvent,
    ToolArgumentsEvent,
    ToolCallEvent,
)
from inference.errors import OpenAIError


def compact_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class Renderer(ABC):
    """One response in one protocol: server-sent event frames while streaming, a body when not, both from
    the same engine events (so a streamed answer and a whole one say the same)."""

    def stream_start(self, accepted: AcceptedEvent) -> bytes:
        """Frames sent once the engine has admitted the request, before its first token."""
        return b""

    @abstractmethod
    def stream_delta(self, text: str) -> bytes: ...

    def stream_reasoning(self, text: str, choice: int = 0) -> bytes:
        """A piece of a thinking model's reasoning; never part of the answer's text (dropped by default)."""
        return b""

    def stream_delta_event(self, event: DeltaEvent) -> bytes:
        """A delta with what else it carries (a choice's index, log-probabilities), where a protocol shows it."""
        return self.stream_delta(event["text"])

    def stream_choice_end(self, event: ChoiceEndEvent) -> bytes:
        raise AssertionError(f"{type(self).__name__} serves one choice per request")

    def stream_tool_call(self, event: ToolCallEvent) -> bytes:
        raise AssertionError(f"{type(self).__name__} serves no tools")

    def stream_tool_arguments(self, event: ToolArgumentsEvent) -> bytes:
        raise AssertionError(f"{type(self).__name__} serves no tools")

    @abstractmethod
    def stream_finish(self, finish: FinishEvent) -> bytes:
        """The held-back text (if any), the finish frames and usage."""

    @abstractmethod
    def stream_error(self, error: OpenAIError) -> bytes: ...

    @abstractmethod
    def heartbeat(self) -> bytes:
        """Keeps proxies and clients waiting through a long prefill."""

    def stream_end(self) -> bytes:
        return b""

    @abstractmethod
    def body(self, events: list[EngineEvent]) -> dict[str, Any]:
        """The whole answer from every event the engine sent (the last one terminal)."""


def text_and_finish(events: list[EngineEvent]) -> tuple[str, FinishEvent]:
    pieces = [event["text"] for event in events if event["type"] in ("delta", "finish")]
    finish = events[-1]
    assert finish["type"] == "finish"
    return "".join(pieces), finish


def reasoning_text(events: list[EngineEvent]) -> str:
    return "".join(event["text"] for event in events if event["type"] == "reasoning")


def reasoning_tokens(finish: FinishEvent) -> int:
    return finish.get("reasoning_tokens", 0)


@dataclass
class Call:
    id: str
    name: str
    arguments: str = ""


def tool_calls(events: list[EngineEvent]) -> list[Call]:
    """The calls an answer made, in order, each with its arguments joined from their pieces."""
    calls: dict[int, Call] = {}
    for event in events:
        if event["type"] == "tool_call":
            calls[event["index"]] = Call(event["id"], event["name"])
        elif event["type"] == "tool_arguments":
            calls[event["index"]].arguments += event["arguments"]
    return [calls[index] for index in sorted(calls)]
