"""What crosses between the web side and the engine: requests in, events out.

Everything here is plain data (strings, numbers, lists, dicts, bytes), so that an
engine in another process can receive it through a channel layer: ``to_wire`` and
``request_from_wire`` turn a request into primitives and back. No MLX here.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

ModelKind = Literal["text", "vision", "embedding"]


def new_engine_id() -> str:
    """The engine's own key for a request: made here, never taken from a client (two clients may send the
    same x-request-id, and one client's disconnect must never end another's request)."""
    return uuid.uuid4().hex


class ModelSpec(TypedDict):
    key: str  # one loaded model per key (the folder path)
    path: str
    context_length: int | None
    kind: NotRequired[ModelKind]  # which runtime serves it; text when absent
    pinned: NotRequired[bool]  # never evicted, never unloaded for idleness
    idle_ttl: NotRequired[float | None]  # seconds idle before it unloads; None: the engine's default


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


@dataclass(frozen=True)
class GrammarSpec:
    """What the output must be, enforced while decoding (llguidance): plain data, so it crosses the seam.

    ``json_schema``: JSON valid for ``schema``. ``json_object``: any JSON object. ``tool_calls``: one call
    (``parallel`` False) or one or more calls of ``tools`` (OpenAI function tools:
    ``{"type": "function", "function": {"name", "description", "parameters"}}``), or of the tool named
    ``choice`` only, in the model's own tool-call format.
    """

    kind: Literal["json_schema", "json_object", "tool_calls"]
    schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    choice: str | None = None
    parallel: bool = True


@dataclass
class GenerationRequest:
    model: ModelSpec
    # What the client sent is one of these: chat messages (rendered with the tokenizer's chat template),
    # a raw prompt string, or prompt token ids. A long prompt rendered off the engine thread keeps its
    # messages (the reasoning split reads them) and gains its ids: ``prompt_tokens`` wins when both are set.
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    prompt_tokens: list[int] | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Encoded image files (PNG, JPEG, WEBP, GIF) for a vision model, in the order their parts appear in
    # ``messages``; the engine decodes them.
    images: list[bytes] = field(default_factory=list)
    # Tools the model may call (OpenAI function tools), rendered by its chat template (or, for a template
    # without tool support, in a system message); their calls in the output are parsed into tool events.
    # None: no tools offered (tool_choice "none" sends none), and nothing is parsed as a call.
    tools: list[dict[str, Any]] | None = None
    # Enforced while decoding: a JSON schema, any JSON object, or forced tool calls (tool_choice
    # required / a named function / Anthropic any / tool). None: free text.
    grammar: GrammarSpec | None = None
    # The generation ends once this many calls are made (tool_choice auto with parallel_tool_calls false;
    # forced calls are bounded by their grammar). None: no limit.
    max_tool_calls: int | None = None
    # What the chat template gets beyond the messages (a client's chat_template_kwargs, reasoning_effort).
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    # A thinking model (inference.engine.reasoning): None leaves thinking to the template; False turns it off
    # (enable_thinking=False, and a think block the template opens anyway is closed in the prompt); True on.
    thinking: bool | None = None
    # Tokens the thinking may use before its end is forced (Anthropic's budget_tokens). None: no cap.
    thinking_budget: int | None = None
    # A final assistant message is continued (rendered open, generation goes on from it), not answered.
    prefill: bool = False
    request_id: str = field(default_factory=new_engine_id)
    trace_id: str = ""  # the client-facing request id, for the engine's log lines only
    # Log-probabilities of the generated tokens, with this many alternatives (0 to 20) per token; None: none.
    logprobs: int | None = None
    # Choices per prompt, each its own row of the batch and its own sampling stream (seed + i).
    n: int = 1
    # Several prompts in one request (text completions): ``prompt`` / ``prompt_tokens`` unset; choice
    # ``p * n + j`` answers prompt ``p``.
    prompts: list[str | list[int]] | None = None
    # The prompt's own text (and log-probabilities, with ``logprobs``) comes first in each choice.
    echo: bool = False

    @property
    def choices(self) -> int:
        return self.n * (len(self.prompts) if self.prompts is not None else 1)


@dataclass
class EmbeddingRequest:
    model: ModelSpec
    inputs: list[str | list[int]]
    request_id: str = field(default_factory=new_engine_id)
    trace_id: str = ""


EngineRequest = GenerationRequest | EmbeddingRequest


def to_wire(request: EngineRequest) -> dict[str, Any]:
    """The request as primitives (``bytes`` for images), tagged with its type."""
    return {"type": type(request).__name__, **dataclasses.asdict(request)}


def request_from_wire(data: dict[str, Any]) -> EngineRequest:
    fields = {name: value for name, value in data.items() if name != "type"}
    if data.get("type") == "EmbeddingRequest":
        return EmbeddingRequest(**fields)
    sampling = dict(fields.pop("sampling", {}) or {})
    # Keys of a JSON object are strings; token ids are ints.
    sampling["logit_bias"] = {int(token): bias for token, bias in (sampling.get("logit_bias") or {}).items()}
    grammar = fields.pop("grammar", None)
    if grammar is not None:
        grammar = GrammarSpec(**{**grammar, "tools": tuple(grammar.get("tools") or ())})
    return GenerationRequest(**fields, sampling=SamplingParams(**sampling), grammar=grammar)


class AcceptedEvent(TypedDict):
    type: Literal["accepted"]
    prompt_tokens: int
    cached_tokens: int


class TokenLogprob(TypedDict):
    """One token's log-probability (None for a prompt's first token) and its ``top`` alternatives as
    (text, log-probability), best first; the ``text`` of a request's tokens concatenates to its text."""

    text: str
    logprob: float | None
    top: list[tuple[str, float]] | None


class DeltaEvent(TypedDict):
    type: Literal["delta"]
    text: str
    tokens: int  # tokens generated so far (by every choice of the request)
    logprobs: NotRequired[list[TokenLogprob]]  # the tokens of ``text``, when the request asks
    choice: NotRequired[int]  # which choice, when a request has several (absent: 0)


class ReasoningEvent(TypedDict):
    """A piece of a thinking model's reasoning (never part of the answer's text)."""

    type: Literal["reasoning"]
    text: str
    tokens: int  # tokens generated so far
    choice: NotRequired[int]  # which choice, when a request has several (absent: 0)


class ToolCallEvent(TypedDict):
    """A tool call begins: its index in this answer, its id and the tool's name (arguments follow)."""

    type: Literal["tool_call"]
    index: int
    id: str  # "call_…"; Anthropic's renderer shows it as is
    name: str
    choice: NotRequired[int]


class ToolArgumentsEvent(TypedDict):
    """A piece of a call's arguments, as the model wrote them (the pieces concatenate to a JSON object)."""

    type: Literal["tool_arguments"]
    index: int
    arguments: str
    choice: NotRequired[int]


class FinishEvent(TypedDict):
    type: Literal["finish"]
    text: str  # any text held back until the end
    finish_reason: Literal["stop", "length", "cancelled", "tool_calls"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: NotRequired[int]  # of completion_tokens, those generated inside thinking
    stop_sequence: NotRequired[str]  # the stop string that ended the output, when one did
    logprobs: NotRequired[list[TokenLogprob]]  # the tokens of ``text``, when the request asks
    choices: NotRequired[int]  # a request of several choices: each ended with a ChoiceEndEvent before this


class ChoiceEndEvent(TypedDict):
    """One choice of a request with several ends (its held-back text, its reason); the request's own
    ``finish`` follows the last one, with the usage of them all."""

    type: Literal["choice_end"]
    choice: int
    text: str
    finish_reason: Literal["stop", "length", "cancelled", "tool_calls"]
    completion_tokens: int
    logprobs: NotRequired[list[TokenLogprob]]
    reasoning_tokens: NotRequired[int]
    stop_sequence: NotRequired[str]


class EmbeddingsEvent(TypedDict):
    type: Literal["embeddings"]
    # One row per input, in input order: ``count`` rows of ``dimensions`` little-endian float32 values.
    vectors: bytes
    count: int
    dimensions: int
    prompt_tokens: int


class ErrorEvent(TypedDict):
    type: Literal["error"]
    status: int
    code: str
    param: str | None
    message: str
    retry_after: NotRequired[int]  # seconds, for refusals that pass (a full queue, memory in use)


def finish_event(reason: str, *, text: str = "", prompt: int, completion: int, cached: int = 0) -> FinishEvent:
    return {
        "type": "finish",
        "text": text,
        "finish_reason": reason,  # type: ignore[typeddict-item]
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
    }


EngineEvent = (
    AcceptedEvent
    | DeltaEvent
    | ReasoningEvent
    | ToolCallEvent
    | ToolArgumentsEvent
    | FinishEvent
    | ChoiceEndEvent
    | EmbeddingsEvent
    | ErrorEvent
)
EventSink = Callable[[EngineEvent], None]
TERMINAL_EVENTS = frozenset({"finish", "error", "embeddings"})


class EngineError(Exception):
    """A refusal the client should see, with its HTTP status and OpenAI code."""

    def __init__(
        self, message: str, *, status: int, code: str, param: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def as_event(self) -> ErrorEvent:
        event: ErrorEvent = {
            "type": "error",
            "status": self.status,
            "code": self.code,
            "param": self.param,
            "message": str(self),
        }
        if self.retry_after is not None:
            event["retry_after"] = self.retry_after
        return event

    @classmethod
    def from_event(cls, event: ErrorEvent) -> EngineError:
        return cls(
            event["message"],
            status=event["status"],
            code=event["code"],
            param=event["param"],
            retry_after=event.get("retry_after"),
        )
