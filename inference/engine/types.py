"""What crosses between the web side and the engine thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypedDict


class ModelSpec(TypedDict):
    key: str  # one loaded model per key (the folder path)
    path: str
    context_length: int | None


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class GenerationRequest:
    request_id: str
    model: ModelSpec
    # Exactly one of these: chat messages (rendered with the tokenizer's chat
    # template), a raw prompt string, or prompt token ids.
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    prompt_tokens: list[int] | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)


class AcceptedEvent(TypedDict):
    type: Literal["accepted"]
    prompt_tokens: int
    cached_tokens: int


class DeltaEvent(TypedDict):
    type: Literal["delta"]
    text: str
    tokens: int  # tokens generated so far


class FinishEvent(TypedDict):
    type: Literal["finish"]
    text: str  # any text held back until the end
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class ErrorEvent(TypedDict):
    type: Literal["error"]
    status: int
    code: str
    param: str | None
    message: str


EngineEvent = AcceptedEvent | DeltaEvent | FinishEvent | ErrorEvent
EventSink = Callable[[EngineEvent], None]
TERMINAL_EVENTS = frozenset({"finish", "error"})


class EngineError(Exception):
    """A refusal the client should see, with its HTTP status and OpenAI code."""

    def __init__(self, message: str, *, status: int, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param

    def as_event(self) -> ErrorEvent:
        return {"type": "error", "status": self.status, "code": self.code, "param": self.param, "message": str(self)}
