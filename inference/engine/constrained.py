"""Grammar masks inside the shared batch: one batched llguidance mask per decode step (engine thread only).

A request asks for a grammar by carrying a ``GrammarMask`` in its ``logits_processors`` list, so its row
keeps the grammar through BatchGenerator's insert, extend, filter and remove with no other plumbing;
``GrammarMask`` itself is the identity (under a stock GenerationBatch it would do nothing).

``GrammarGenerationBatch._step`` is mlx-lm 0.32.2's ``GenerationBatch._step`` with ``_apply_grammars``
inserted: for every row with a grammar, consume the token it sampled last step and fill its row of one
``(rows, words)`` bitmask, then one numpy unpack and one ``mx.where`` over those rows only. Why batched
and why the early ``mx.async_eval`` (measured in notes/issue13/constrained-decoding.md, section 1):

- a matcher must consume token k-1 inside step k (the runner only sees it after step k's graph exists),
  and reading it on the host is a sync on the previous step's sampling;
- on MLX's CPU backend ``async_eval`` returns only near the end of a big graph, so enqueueing this step's
  forward pass *before* that sync lets the host fill the masks while the forward pass runs; the
  sync then reads ``inputs`` (already computed: a few µs), never a per-row TokenBuffer slice queued
  behind the forward pass (1.2 ms);
- a batch with no grammar row runs the stock path.

``tests/inference/test_constrained.py`` pins the two mlx-lm methods copied here by a hash of their
source, so an mlx-lm upgrade fails a test instead of silently dropping the masks.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import llguidance.numpy as llnumpy
import mlx.core as mx
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from inference.engine.grammars import parser_limits
from inference.engine.types import EngineError

# `mlx_lm.generate` as an attribute is the function; the module is untyped (Any).
generate_module: Any = importlib.import_module("mlx_lm.generate")
BatchGenerator: Any = generate_module.BatchGenerator
GenerationBatch: Any = generate_module.GenerationBatch
PromptProcessingBatch: Any = generate_module.PromptProcessingBatch

# Warmed pristine matchers kept per loaded model (a copy costs 1 µs; a compile 1-3 ms plus a cold first mask).
GRAMMAR_CACHE_SIZE = 128
# sha256 of inspect.getsource of the mlx-lm methods the subclasses below copy: mlx-lm 0.32.2's.
WRITTEN_FOR = {
    "GenerationBatch._step": "d7513c5031029194ca3820ae81d8966b792e66a90c39c1d7ad61d30bc9e8c5ad",
    "PromptProcessingBatch.generate": "1af9ca01578812d31240743d6d920fe1c5bc8d09021d182b20178aeede95de83",
}


def source_fingerprints() -> dict[str, str]:
    """The hash of each mlx-lm method this module copies, to compare with the version it was written for."""
    methods = {
        "GenerationBatch._step": GenerationBatch._step,
        "PromptProcessingBatch.generate": PromptProcessingBatch.generate,
    }
    return {name: hashlib.sha256(inspect.getsource(method).encode()).hexdigest() for name, method in methods.items()}


class GrammarMask:
    """A request's grammar state, carried in its logits_processors list (the identity when called)."""

    def __init__(self, matcher: LLMatcher, *, vocab: int) -> None:
        self.matcher = matcher
        self.vocab = vocab  # the width of the matcher's masks
        # False until the row's first decode step: there `inputs` is the last prompt token, not a sampled one.
        self.started = False

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return logits


def grammar_of(processors: list[Any] | None) -> GrammarMask | None:
    for processor in processors or ():
        if isinstance(processor, GrammarMask):
            return processor
    return None


class GrammarGenerationBatch(GenerationBatch):
    _current_tokens: Any
    _current_logprobs: Any
    _next_tokens: Any
    _next_logprobs: Any

    def _apply_grammars(self, inputs: mx.array, logits: mx.array, rows: list[tuple[int, GrammarMask]]) -> mx.array:
        if any(mask.started for _, mask in rows):
            mx.async_eval(logits)  # enqueue the forward pass before the one sync below (see the module docstring)
            last: list[int] = inputs.tolist()  # type: ignore[assignment]  # a 1-D array of token ids
            for row, mask in rows:
                if mask.started:  # a refused token puts the matcher in its error state: the runner ends it
                    mask.matcher.consume_token(last[row])
        width = rows[0][1].vocab  # the grammar's vocabulary (one model per batch)
        bitmask = np.empty((len(rows), (width + 31) // 32), dtype=np.int32)
        for index, (_, mask) in enumerate(rows):
            mask.started = True
            llnumpy.fill_next_token_bitmask(mask.matcher, bitmask, index)
        unpacked = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :width].view(np.bool_)
        vocab = logits.shape[-1]  # known before evaluation; a wider head than the tokenizer gets its extra ids banned
        if vocab != width:
            unpacked = np.pad(unpacked, ((0, 0), (0, max(0, vocab - width))))[:, :vocab]
        allowed = mx.array(unpacked)
        if len(rows) == len(self.uids):
            return mx.where(allowed, logits, -mx.inf)
        constrained = mx.array([row for row, _ in rows])
        logits[constrained] = mx.where(allowed, logits[constrained], -mx.inf)
        return logits

    # mlx-lm 0.32.2's GenerationBatch._step, with _apply_grammars inserted and GrammarMask left out of the
    # per-row processors (so a row with only a grammar takes no slice-and-concatenate path).
    def _step(self) -> tuple[list[int], list[mx.array]]:
        self._current_tokens = self._next_tokens
        self._current_logprobs = self._next_logprobs
        inputs = self._current_tokens

        logits = self.model(inputs[:, None], cache=self.prompt_cache)
        logits = logits[:, -1, :]

        processors_of_rows = self.logits_processors
        rows = [(row, mask) for row, procs in enumerate(processors_of_rows or ()) if (mask := grammar_of(procs))]
        if rows:
            logits = self._apply_grammars(inputs, logits, rows)
            processors_of_rows = [
                [p for p in procs or () if not isinstance(p, GrammarMask)] for procs in processors_of_rows
            ]

        token_context = []
        if any(processors_of_rows):
            processed_logits = []
            for e in range(len(self.uids)):
                sample_logits = logits[e : e + 1]
                processors = processors_of_rows[e] or ()
                if processors:
                    context = self._token_context[e].update_and_fetch(inputs[e : e + 1])
                    token_context.append(context)
                    for processor in processors:
                        sample_logits = processor(context, sample_logits)
                processed_logits.append(sample_logits)
            logits = mx.concatenate(processed_logits, axis=0)

        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)

        samplers = [self.fallback_sampler if s is None else s for s in (self.samplers or [None] * len(self.uids))]
        if not samplers or all(s is samplers[0] for s in samplers):
            sampled = (samplers[0] if samplers else self.fallback_sampler)(logprobs)
        else:
            sampled = mx.concatenate([s(logprobs[e : e + 1]) for e, s in enumerate(samplers)], axis=0)

        self._next_tokens = sampled
        self._next_logprobs = list(logprobs)
        mx.async_eval(self._next_tokens, self._next_logprobs, token_context)

        mx.eval(inputs, self._current_logprobs)
        tokens: list[int] = inputs.tolist()  # type: ignore[assignment]
        for sti, ti in zip(self.tokens, tokens, strict=False):
            sti.append(ti)
        return tokens, self._current_logprobs


class GrammarPromptBatch(PromptProcessingBatch):
    uids: list[int]
    prompt_cache: list[Any]
    tokens: list[list[int]]
    samplers: list[Any]
    logits_processors: list[Any]
    max_tokens: list[int]

    # mlx-lm 0.32.2's PromptProcessingBatch.generate, building the grammar-aware generation batch.
    def generate(self, tokens: list[list[int]]) -> GrammarGenerationBatch:
        if any(len(t) > 1 for t in tokens):
            self.prompt([t[:-1] for t in tokens])
        last_token = mx.array([t[-1] for t in tokens])
        generation = GrammarGenerationBatch(
            self.model,
            self.uids,
            last_token,
            self.prompt_cache,
            self.tokens,
            self.samplers,
            self.fallback_sampler,
            self.logits_processors,
            self.stop_sequences,
            self.max_tokens,
        )
        self.uids = []
        self.prompt_cache = []
        self.tokens = []
        self.samplers = []
        self.logits_processors = []
        self.max_tokens = []
        return generation


class GrammarBatchGenerator(BatchGenerator):
    """BatchGenerator whose generation batches apply grammar masks.

    BatchGenerator makes its batches in two places: the empty ones in __init__, and each new generation
    batch in PromptProcessingBatch.generate. ``_make_batch``'s plain PromptProcessingBatch is merged into
    ``_prompt_batch`` (a GrammarPromptBatch) with extend(), and split() copies with ``self.__class__``.
    """

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._generation_batch = GrammarGenerationBatch.empty(self.model, self.sampler)
        self._prompt_batch = GrammarPromptBatch.empty(
            self.model, self.sampler, prefill_step_size=self.prefill_step_size
        )


class GrammarCache:
    """One per loaded text model: its LLTokenizer, and warmed pristine matchers by grammar key (LRU)."""

    def __init__(self, *, tokenizer: Any, vocab_size: int, size: int = GRAMMAR_CACHE_SIZE) -> None:
        import llguidance.hf

        # Built at load: 30 ms for an 8k vocabulary, about a second for 150k, holding the GIL.
        self.tokenizer: LLTokenizer = llguidance.hf.from_tokenizer(
            tokenizer._tokenizer, n_vocab=vocab_size, eos_token=sorted(tokenizer.eos_token_ids)
        )
        self.size = size
        self._pristine: OrderedDict[str, LLMatcher] = OrderedDict()

    def special_token(self, ids: list[int]) -> int | None:
        """The id, when ``ids`` is one special (added) token."""
        if len(ids) == 1 and self.tokenizer.is_special_token(ids[0]):
            return ids[0]
        return None

    def matcher(self, *, key: str, grammar: Callable[[], str], param: str) -> LLMatcher:
        """A fresh matcher for the grammar ``key`` names (``grammar()`` builds it on a miss)."""
        pristine = self._pristine.get(key)
        if pristine is None:
            pristine = LLMatcher(self.tokenizer, grammar(), log_level=0, limits=parser_limits())
            if pristine.is_error():
                raise EngineError(
                    f"This grammar cannot be enforced: {pristine.get_error()}",
                    status=400,
                    code="invalid_request_error",
                    param=param,
                )
            # One mask now, so every copy starts with the lexer caches warm (16-25 µs instead of 1.2-1.5 ms).
            llnumpy.fill_next_token_bitmask(pristine, llnumpy.allocate_token_bitmask(1, self.tokenizer.vocab_size))
            self._pristine[key] = pristine
            while len(self._pristine) > self.size:
                self._pristine.popitem(last=False)
        else:
            self._pristine.move_to_end(key)
        return pristine.deep_copy()
