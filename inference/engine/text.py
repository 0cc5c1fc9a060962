"""Text models: one continuous batch (mlx-lm's BatchGenerator) per loaded model.

A request may carry a grammar (JSON schema, any JSON object, forced tool calls): its row of the shared
batch is masked while decoding (``inference.engine.constrained``), the others are untouched. A request
with tools has its calls read from its output (``inference.engine.toolcalls``) into tool events.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from inference.engine.choices import is_grouped
from inference.engine.config import BatchConfig, KernelConfig
from inference.engine.grammars import (
    GENERIC_END,
    GENERIC_START,
    grammar_key,
    marker_lark,
    schema_grammar,
    tool_call_grammar,
)
from inference.engine.grouped import admit_group
from inference.engine.kernels import prepare_model
from inference.engine.logprobs import score_step
from inference.engine.reasoning import Thinking, route_reasoning, thinking_for
from inference.engine.runner import Release, Runner
from inference.engine.sampling import make_request_processors, make_request_sampler
from inference.engine.stops import StopStringMatcher
from inference.engine.tokens import forces_calls, render_prompt, tools_of
from inference.engine.types import EngineError, EventSink, GenerationRequest, GrammarSpec, ModelSpec, finish_event

if TYPE_CHECKING:
    from inference.engine.choices import ChoiceGroup
    from inference.engine.constrained import GrammarCache, GrammarMask
    from inference.engine.logprobs import LogprobTrack, TokenTexts
    from inference.engine.toolcalls import ToolCallTracker

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_LENGTH = 4096


@dataclass
class ActiveRequest:
    request: GenerationRequest
    sink: EventSink
    uid: int
    detokenizer: Any
    stops: StopStringMatcher
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int = 0
    mask: GrammarMask | None = None
    tracker: ToolCallTracker | None = None
    thinking: Thinking | None = None  # a thinking model's reasoning split (chat requests only)
    logprobs: LogprobTrack | None = None


def context_length_of(path: str, override: int | None) -> int:
    if override:
        return override
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_CONTEXT_LENGTH
    for source in (config, config.get("text_config") or {}):
        for name in ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"):
            if isinstance(source.get(name), int):
                return int(source[name])
    return DEFAULT_CONTEXT_LENGTH


def keeping_leading_space(detokenizer: Any) -> Any:
    """mlx-lm's streaming detokenizers drop the first token's leading space (a chat-UI habit);
    an API must return exactly what the model produced (" the" after "once upon a time")."""
    if hasattr(detokenizer, "trim_space"):
        detokenizer.trim_space = False
    if hasattr(detokenizer, "_maybe_trim_space"):
        detokenizer._maybe_trim_space = lambda text: text
    return detokenizer


def parameter_bytes(model: Any) -> int:
    from mlx.utils import tree_flatten

    arrays = cast(list[tuple[str, Any]], tree_flatten(model.parameters()))
    return sum(array.nbytes for _, array in arrays)


def tokens_in_vocabulary(tokens: list[int], vocab_size: int | None) -> bool:
    return not vocab_size or all(0 <= token < vocab_size for token in tokens)


class TextRunner(Runner):
    kind = "text"

    def __init__(
        self, spec: ModelSpec, release: Release, *, kernels: KernelConfig, batch: BatchConfig, prefix_cache: Any
    ) -> None:
        import mlx_lm
        from mlx_lm.generate import StopSequences

        super().__init__(spec, release)
        self.config = batch
        self.prefix_cache = prefix_cache
        self.model: Any
        self.model, self.tokenizer = mlx_lm.load(spec["path"])[:2]  # the 3-tuple form only comes with return_config
        self.kernel = prepare_model(self.model, path=spec["path"], plan=kernels)
        self.weights_bytes = parameter_bytes(self.model)
        self.context_length = context_length_of(spec["path"], spec.get("context_length"))
        self.stop_sequences = StopSequences([(token,) for token in sorted(self.tokenizer.eos_token_ids)])
        self.grammars, self.grammar_problem = self._grammar_cache()
        self.batch = self._new_batch()
        self.active: dict[int, ActiveRequest] = {}
        self.uid_by_request: dict[str, int] = {}
        self.groups: dict[str, ChoiceGroup] = {}  # requests of several choices (inference.engine.grouped)
        self.group_of: dict[str, ChoiceGroup] = {}  # by each choice's own request id
        self.token_texts: TokenTexts | None = None  # made at the first request with logprobs

    def _grammar_cache(self) -> tuple[GrammarCache | None, str]:
        """The model's grammar compiler, built at load (building it for a large vocabulary takes about a
        second: lazily, the first constrained request would stall every other one)."""
        from inference.engine.constrained import GrammarCache

        try:
            return GrammarCache(tokenizer=self.tokenizer, vocab_size=self.vocab_size or len(self.tokenizer)), ""
        except Exception as exc:  # a tokenizer llguidance cannot read (only fast HF tokenizers): no grammars
            logger.warning("no grammars for %s: %s", self.spec["path"], exc)
            return None, f"{type(exc).__name__}: {exc}"

    def _new_batch(self) -> Any:
        from inference.engine.constrained import GrammarBatchGenerator as BatchGenerator

        return BatchGenerator(
            self.model,
            completion_batch_size=self.config.max_batch,
            prefill_batch_size=self.config.prefill_batch,
            prefill_step_size=self.config.prefill_step,
        )

    @property
    def requests(self) -> int:
        return len(self.active)

    @property
    def vocab_size(self) -> int | None:
        return self.model.args.vocab_size if hasattr(self.model, "args") else None

    def snapshot(self) -> dict[str, Any]:
        decoding = len(self.batch._generation_batch)
        return {"decoding": decoding, "waiting": len(self.active) - decoding}

    def close(self) -> None:
        self.batch = None
        self.model = None

    def admit(self, request: Any, sink: EventSink) -> None:
        if not isinstance(request, GenerationRequest):
            raise self.wrong_kind("embeddings")
        if is_grouped(request):
            return admit_group(self, request, sink)
        if request.images:
            raise EngineError("This model does not take images.", status=400, code="wrong_model_kind", param="messages")
        param = "messages" if request.messages is not None else "prompt"
        prompt = render_prompt(self.tokenizer, request)
        if not prompt:
            raise EngineError("The prompt is empty.", status=400, code="invalid_request_error", param=param)
        if not tokens_in_vocabulary(prompt, self.vocab_size):
            raise EngineError(
                "The prompt holds token ids outside the vocabulary.",
                status=400,
                code="invalid_request_error",
                param=param,
            )
        if not tokens_in_vocabulary(list(request.sampling.logit_bias), self.vocab_size):
            raise EngineError(
                f"logit_bias names token ids outside this model's vocabulary (0 to {(self.vocab_size or 1) - 1}).",
                status=400,
                code="invalid_request_error",
                param="logit_bias",
            )
        max_tokens = check_context(self.context_length, len(prompt), request.max_tokens, param=param)
        processors: list[Any] = make_request_processors(request.sampling)
        mask = self._grammar_mask(request.grammar) if request.grammar is not None else None
        forced: list[int] = []
        if mask is not None:
            # The grammar's forced prefix (a tool call's `<tool_call>\n{"name": "`) goes in with the
            # prompt: the first call event then comes one decode step after the prefill.
            forced = mask.matcher.compute_ff_tokens()[: max_tokens - 1]
            mask.matcher.consume_tokens(forced)
            processors = [mask, *processors]
        tracker = self._tool_tracker(request)
        thinking = thinking_for(self.tokenizer, request, prompt)
        if thinking is not None:
            processors = [*processors, *thinking.processors]  # last: a forced end marker overrides the rest
        track = self._logprob_track(request, sink)
        if track is not None:
            track.forced(forced)
            sink = track
        served = prompt + forced
        cache, rest = self.prefix_cache.fetch_nearest_cache(self.key, served)
        if cache is not None and not rest:
            cache, rest = self._step_back(cache, served)
        cached = min(len(served) - len(rest), len(prompt))
        (uid,) = self.batch.insert(
            [rest],
            max_tokens=[max_tokens - len(forced)],
            caches=[cache],
            all_tokens=[served[: len(served) - len(rest)]],
            samplers=[make_request_sampler(request.sampling)],
            logits_processors=[processors],
            stop_sequences=[self.stop_sequences],
        )
        active = ActiveRequest(
            request=request,
            sink=sink,
            uid=uid,
            detokenizer=keeping_leading_space(self.tokenizer.detokenizer),
            stops=StopStringMatcher(request.stop),
            prompt_tokens=len(prompt),
            cached_tokens=cached,
            completion_tokens=len(forced),
            mask=mask,
            tracker=tracker,
            thinking=thinking,
            logprobs=track,
        )
        self.active[uid] = active
        self.uid_by_request[request.request_id] = uid
        sink({"type": "accepted", "prompt_tokens": len(prompt), "cached_tokens": cached})
        if forced:
            for token in forced:
                active.detokenizer.add_token(token)
            text, matched = self._deliver(active, active.detokenizer.last_segment, final=False)
            if matched:
                self.batch.remove([uid])
                self._finish(active, "stop", text)
            elif text:
                sink({"type": "delta", "text": text, "tokens": active.completion_tokens})

    def prompt_budget(self, tokens: list[int], max_tokens: int | None, *, param: str) -> int:
        """The completion budget of one of a request's prompts (grouped admission); a 400 when it is unfit."""
        if not tokens or not tokens_in_vocabulary(tokens, self.vocab_size):
            problem = "is empty" if not tokens else "holds token ids outside the vocabulary"
            raise EngineError(f"A prompt {problem}.", status=400, code="invalid_request_error", param=param)
        return check_context(self.context_length, len(tokens), max_tokens, param=param)

    def fresh_detokenizer(self) -> Any:
        return keeping_leading_space(self.tokenizer.detokenizer)

    def _logprob_track(self, request: GenerationRequest, sink: EventSink) -> LogprobTrack | None:
        if request.logprobs is None:
            return None
        from inference.engine.logprobs import LogprobTrack, TokenTexts

        self.token_texts = self.token_texts or TokenTexts(self.tokenizer)
        return LogprobTrack(sink, texts=self.token_texts, detokenizer=self.fresh_detokenizer(), top=request.logprobs)

    def _grammar_mask(self, spec: GrammarSpec) -> GrammarMask:
        from inference.engine.constrained import GrammarMask

        param = "tool_choice" if spec.kind == "tool_calls" else "response_format"
        if self.grammars is None:
            raise EngineError(
                "This model's tokenizer cannot be used to enforce a grammar.",
                status=400,
                code="grammar_not_supported",
                param=param,
            )

        def build() -> str:
            if spec.kind != "tool_calls":
                return schema_grammar(spec)
            return tool_call_grammar(spec, start=self._marker(GENERIC_START), end=self._marker(GENERIC_END))

        try:
            matcher = self.grammars.matcher(key=grammar_key(spec), grammar=build, param=param)
            return GrammarMask(matcher, vocab=self.grammars.tokenizer.vocab_size)
        except ValueError as exc:  # a schema that is not a JSON object, a tool name Lark cannot hold
            raise EngineError(
                f"This grammar cannot be enforced: {exc}", status=400, code="invalid_request_error", param=param
            ) from exc

    def _marker(self, text: str) -> str:
        """A call marker as the grammar writes it: the model's own special token when it has one."""
        assert self.grammars is not None
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return marker_lark(text=text, token=self.grammars.special_token(ids))

    def _tool_tracker(self, request: GenerationRequest) -> ToolCallTracker | None:
        """Calls are read when a grammar forces them (in the Hermes format it forces), or when tools are
        offered to a template that teaches its own format; tool_choice none sends no tools: nothing is read."""
        if not forces_calls(request) and not (request.tools and request.grammar is None):
            return None
        from inference.engine.toolcalls import GENERIC_FORMAT, ToolCallTracker, native_format

        if forces_calls(request):
            return ToolCallTracker(format=GENERIC_FORMAT, tools=tools_of(request), forced=True)
        native = native_format(self.tokenizer)
        return ToolCallTracker(format=native, tools=tools_of(request), forced=False) if native else None

    def _step_back(self, cache: list[Any], prompt: list[int]) -> tuple[list[Any] | None, list[int]]:
        """An exact cache hit still needs one token to compute logits from."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if can_trim_prompt_cache(cache):
            trim_prompt_cache(cache, 1)
            return cache, prompt[-1:]
        return None, prompt

    def step(self) -> None:
        _, responses = self.batch.next()
        scored = score_step(self.token_texts, responses, self.active) if self.token_texts is not None else {}
        finished: list[int] = []
        for response in responses:
            active = self.active.get(response.uid)
            if active is None:
                continue
            active.completion_tokens += 1
            if active.logprobs is not None:  # the row the batch sampled from, already evaluated
                active.logprobs.add(response.token, scored[response.uid], end_of_text=response.finish_reason == "stop")
            # The batch has already fed this token to the request's grammar (inside the decode step).
            matcher = active.mask.matcher if active.mask is not None else None
            if matcher is not None and matcher.is_error():
                finished.append(response.uid)
                self._fail(active, grammar_error(matcher.get_error()))
                continue
            # A complete grammar allows only EOS next: end now and save that step.
            grammar_done = response.finish_reason is None and matcher is not None and matcher.is_stopped()
            done = "stop" if grammar_done else response.finish_reason
            if response.finish_reason != "stop":
                active.detokenizer.add_token(response.token)
                if active.thinking is not None:
                    active.thinking.counter.observe(response.token)
            if done is not None:
                active.detokenizer.finalize()
            text, matched = route_reasoning(
                active, active.detokenizer.last_segment, final=done is not None, deliver=self._deliver
            )
            limit = active.request.max_tool_calls
            tracker = active.tracker
            if done is None and limit is not None and tracker is not None and tracker.completed_calls >= limit:
                grammar_done, done = True, "stop"  # parallel_tool_calls false: one call, then the answer ends
            if matched or grammar_done:
                finished.append(response.uid)
            if matched:
                self._finish(active, "stop", text)
            elif done is not None:
                self._finish(active, done, text)
                if response.prompt_cache is not None:
                    self.prefix_cache.insert_cache(self.key, list(response.all_tokens), response.prompt_cache)
            elif text:
                active.sink({"type": "delta", "text": text, "tokens": active.completion_tokens})
        if finished:
            self.batch.remove(finished)

    def _deliver(self, active: ActiveRequest, text: str, *, final: bool) -> tuple[str, bool]:
        """Decoded text through the tool tracker (calls go out as events at once) and the stop strings
        (content only): the content not sent yet, and whether a stop string ended it."""
        if active.tracker is None:
            pieces: list[Any] = [text]
        else:
            lookahead = ""
            if active.tracker.wants_lookahead and active.mask is not None:
                lookahead = active.mask.matcher.compute_ff_bytes().decode("utf-8", "replace")
            pieces = active.tracker.feed(text, lookahead=lookahead)
            if final:
                pieces += active.tracker.finish()
        pending = ""
        for piece in pieces:
            if isinstance(piece, str):
                safe, matched = active.stops.feed(piece)
                pending += safe
                if matched:
                    return pending, True
                continue
            pending += active.stops.flush()  # a call ends the content before it: nothing held can still stop
            if pending:
                active.sink({"type": "delta", "text": pending, "tokens": active.completion_tokens})
                pending = ""
            active.sink(piece)
        if final:
            pending += active.stops.flush()
        return pending, False

    def _finish(self, active: ActiveRequest, reason: str, text: str) -> None:
        if reason == "stop" and active.tracker is not None and active.tracker.called:
            reason = "tool_calls"
        self.active.pop(active.uid, None)
        self.uid_by_request.pop(active.request.request_id, None)
        self._release_for(active.request)
        finish = finish_event(
            reason,
            text=text,
            prompt=active.prompt_tokens,
            completion=active.completion_tokens,
            cached=active.cached_tokens,
        )
        if active.thinking is not None:
            finish["reasoning_tokens"] = active.thinking.reasoning_tokens
        if reason == "stop" and active.stops.matched is not None:
            finish["stop_sequence"] = active.stops.matched
        active.sink(finish)

    def _release_for(self, request: GenerationRequest) -> None:
        """A request's slot goes back once: a choice's with the last choice of its request."""
        group = self.group_of.pop(request.request_id, None)
        if group is None:
            self.release()
            return
        group.running -= 1
        if group.running == 0 and group.started:
            self.groups.pop(group.request_id, None)
            self.release()

    def cancel(self, request_id: str) -> None:
        group = self.groups.get(request_id)
        if group is not None:
            for member in list(group.members):
                self.cancel(member)
            return
        uid = self.uid_by_request.get(request_id)
        if uid is None:
            return
        self.batch.remove([uid])
        active = self.active.get(uid)
        if active is not None:
            self._finish(active, "cancelled", "")

    def cancel_all(self) -> None:
        for active in list(self.active.values()):
            self.cancel(active.request.request_id)

    def _fail(self, active: ActiveRequest, error: EngineError) -> None:
        if self.active.pop(active.uid, None) is None:
            return  # already ended with the rest of its request's choices
        self.uid_by_request.pop(active.request.request_id, None)
        group = self.group_of.get(active.request.request_id)
        self._release_for(active.request)
        active.sink(error.as_event())
        for member in group.members if group is not None else ():
            self.cancel(member)  # one choice failed: the request fails, its other choices end

    def fail_all(self, error: EngineError) -> None:
        for active in list(self.active.values()):
            self._fail(active, error)
        if self.model is not None:
            self.batch = self._new_batch()


def grammar_error(reason: str) -> EngineError:
    """A matcher in its error state: a bug or an unsatisfiable grammar, never a silent end of output."""
    logger.error("a grammar failed while decoding: %s", reason)
    return EngineError("The output could not be kept to its grammar while decoding.", status=500, code="grammar_error")


def check_context(context_length: int, prompt_tokens: int, max_tokens: int | None, *, param: str) -> int:
    """The completion budget left after the prompt; a 400 before any work when it does not fit."""
    budget = context_length - prompt_tokens
    if budget <= 0:
        raise EngineError(
            f"This model's maximum context length is {context_length} tokens, but the prompt has "
            f"{prompt_tokens} tokens.",
            status=400,
            code="context_length_exceeded",
            param=param,
        )
    wanted = max_tokens if max_tokens is not None else budget
    if wanted > budget:
        raise EngineError(
            f"This model's maximum context length is {context_length} tokens. However, you requested "
            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the prompt, {wanted} for the completion).",
            status=400,
            code="context_length_exceeded",
            param="max_tokens",
        )
    return wanted
