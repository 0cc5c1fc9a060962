"""The reasoning split: a thinking model's thoughts apart from its answer, counted, and capped by a budget.

A model thinks when its tokenizer has thinking markers (mlx-lm's ``TokenizerWrapper`` finds ``<think>`` /
``</think>`` and the other pairs it knows) and the request is a chat. The prompt decides where the output
starts: inside thinking when the template opened a think block and left it open (Qwen3-style generation
prompts), else in the answer. Then:

- ``ReasoningSplitter`` splits the decoded text at the markers (mlx-lm's ``TextStateMachine``, which strips
  them and holds back text that may still become one): reasoning pieces go out as ``reasoning`` events, the
  rest goes on to the tool-call tracker and the stop strings, so a call made after thinking is still read;
- ``ThinkingCounter`` follows the token ids, so ``reasoning_tokens`` counts what was generated inside
  thinking, the closing marker included;
- ``ThinkingBudget`` (a logits processor) forces the closing marker once the thinking has used its budget
  (the marker counts against it, so ``reasoning_tokens`` never exceeds it). It counts on its own from the
  tokens the batch hands it, so it acts on the very step the budget is spent.

Thinking turned off (``thinking`` False, a grammar forcing the output, or a budget of 0) closes a think block
the template left open, in the prompt: the model starts in its answer. Imports MLX only where it forces.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.engine.types import GenerationRequest

TextStateMachine = importlib.import_module("mlx_lm.generate").TextStateMachine


@dataclass(frozen=True)
class ThinkingMarkers:
    start: str
    end: str
    start_ids: tuple[int, ...]
    end_ids: tuple[int, ...]


def markers_of(tokenizer: Any) -> ThinkingMarkers | None:
    """The model's thinking markers, when mlx-lm knows them; None for a model that does not think."""
    if not getattr(tokenizer, "has_thinking", False):
        return None
    start_ids, end_ids = tokenizer.think_start_tokens, tokenizer.think_end_tokens
    if not start_ids or not end_ids:
        return None
    return ThinkingMarkers(tokenizer.think_start, tokenizer.think_end, tuple(start_ids), tuple(end_ids))


def template_options(request: GenerationRequest) -> dict[str, Any]:
    """What the chat template is given beyond the messages and tools: the client's kwargs, the thinking
    switch, and a final assistant message continued (prefill) instead of answered."""
    options: dict[str, Any] = dict(request.template_kwargs)
    if request.thinking is not None:
        options["enable_thinking"] = request.thinking
    messages = request.messages or []
    prefill = request.prefill and bool(messages) and messages[-1].get("role") == "assistant"
    options["add_generation_prompt"] = not prefill
    if prefill:
        options["continue_final_message"] = True
    return options


def _ends_inside(markers: ThinkingMarkers, tokenizer: Any, prompt: list[int]) -> bool:
    return bool(tokenizer.rfind_think_start(prompt) > tokenizer.rfind_think_end(prompt))


def thinking_off(request: GenerationRequest) -> bool:
    return request.thinking is False or request.grammar is not None or request.thinking_budget == 0


def close_thinking(tokenizer: Any, request: GenerationRequest, prompt: list[int]) -> list[int]:
    """The prompt, with a think block the template left open closed when thinking is off."""
    markers = markers_of(tokenizer)
    if markers is None or request.messages is None or not thinking_off(request):
        return prompt
    if not _ends_inside(markers, tokenizer, prompt):
        return prompt
    return [*prompt, *markers.end_ids, *tokenizer.encode("\n\n", add_special_tokens=False)]


class ThinkingCounter:
    """Whether the output is inside thinking, followed token by token; how many tokens were spent there."""

    def __init__(self, markers: ThinkingMarkers, *, inside: bool) -> None:
        self.markers = markers
        self.inside = inside
        self.spent = 0
        self._recent: deque[int] = deque(maxlen=max(len(markers.start_ids), len(markers.end_ids)))

    def _ends_with(self, ids: tuple[int, ...]) -> bool:
        return len(self._recent) >= len(ids) and tuple(self._recent)[len(self._recent) - len(ids) :] == ids

    def observe(self, token: int) -> None:
        self._recent.append(token)
        if self.inside:
            self.spent += 1
            if self._ends_with(self.markers.end_ids):
                self.inside = False
        elif self._ends_with(self.markers.start_ids):
            self.inside = True
            self.spent += len(self.markers.start_ids)


class ThinkingBudget:
    """A logits processor that forces the closing marker once thinking has used ``budget`` tokens."""

    def __init__(self, markers: ThinkingMarkers, *, inside: bool, budget: int) -> None:
        self.counter = ThinkingCounter(markers, inside=inside)
        self.budget = budget
        self._calls = 0
        self._forcing: list[int] = []

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        self._calls += 1
        if self._calls > 1:  # the first call follows the prompt; each later one, one generated token
            self.counter.observe(int(tokens[-1].item()))
        end = self.counter.markers.end_ids
        if not self._forcing and self.counter.inside and self.counter.spent + len(end) >= self.budget:
            self._forcing = list(end)
        if not self._forcing:
            return logits
        forced = self._forcing.pop(0)
        return mx.where(mx.arange(logits.shape[-1]) == forced, mx.zeros_like(logits), -mx.inf)


class ReasoningSplitter:
    """Decoded text in; (is_reasoning, text) pieces out, markers stripped."""

    def __init__(self, markers: ThinkingMarkers, *, inside: bool) -> None:
        transitions = {"normal": [(markers.start, "reasoning")], "reasoning": [(markers.end, "normal")]}
        self._state = TextStateMachine(transitions).make_state("reasoning" if inside else "normal")

    def feed(self, text: str) -> list[tuple[bool, str]]:
        self._state, segments = TextStateMachine.split(self._state, text)
        return [(state == "reasoning", chunk) for state, chunk in segments if chunk]

    def finish(self) -> list[tuple[bool, str]]:
        self._state, held, current = TextStateMachine.flush(self._state)
        return [(current == "reasoning", held)] if held else []


@dataclass
class Thinking:
    """One request's reasoning split: its text splitter and its token count."""

    splitter: ReasoningSplitter
    counter: ThinkingCounter
    processors: list[Any] = field(default_factory=list)  # the budget, when the request set one

    @property
    def reasoning_tokens(self) -> int:
        return self.counter.spent


def thinking_for(tokenizer: Any, request: GenerationRequest, prompt: list[int]) -> Thinking | None:
    """The split for a chat request on a thinking model (None otherwise), starting where the prompt leaves off."""
    markers = markers_of(tokenizer)
    if markers is None or request.messages is None:
        return None
    inside = _ends_inside(markers, tokenizer, prompt)
    thinking = Thinking(ReasoningSplitter(markers, inside=inside), ThinkingCounter(markers, inside=inside))
    if request.thinking_budget is not None and not thinking_off(request):
        thinking.processors.append(ThinkingBudget(markers, inside=inside, budget=request.thinking_budget))
    return thinking


def route_reasoning(
    active: Any, text: str, *, final: bool, deliver: Callable[..., tuple[str, bool]]
) -> tuple[str, bool]:
    """A text runner's new output for one request (``active``, a ``text.ActiveRequest``): the reasoning apart
    (out at once as events), the answer through ``deliver`` (stop strings, tool calls); what ``deliver`` returns."""
    if active.thinking is None:
        return deliver(active, text, final=final)
    splitter = active.thinking.splitter
    pending, matched = "", False
    for reasoning, piece in [*splitter.feed(text), *(splitter.finish() if final else [])]:
        if pending:  # sent before what follows it, so the events keep the output's order
            active.sink({"type": "delta", "text": pending, "tokens": active.completion_tokens})
            pending = ""
        if reasoning:
            active.sink({"type": "reasoning", "text": piece, "tokens": active.completion_tokens})
            continue
        pending, matched = deliver(active, piece, final=False)
        if matched:
            return pending, True
    if final:
        if pending:
            active.sink({"type": "delta", "text": pending, "tokens": active.completion_tokens})
        pending, matched = deliver(active, "", final=True)
    return pending, matched
