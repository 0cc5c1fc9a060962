"""Text models: one continuous batch (mlx-lm's BatchGenerator) per loaded model."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from inference.engine.config import BatchConfig, KernelConfig
from inference.engine.kernels import prepare_model
from inference.engine.runner import Release, Runner
from inference.engine.sampling import make_request_processors, make_request_sampler
from inference.engine.stops import StopStringMatcher
from inference.engine.tokens import render_prompt
from inference.engine.types import EngineError, EventSink, GenerationRequest, ModelSpec, finish_event

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
        self.batch = self._new_batch()
        self.active: dict[int, ActiveRequest] = {}
        self.uid_by_request: dict[str, int] = {}

    def _new_batch(self) -> Any:
        from mlx_lm.generate import BatchGenerator

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
        cache, rest = self.prefix_cache.fetch_nearest_cache(self.key, prompt)
        if cache is not None and not rest:
            cache, rest = self._step_back(cache, prompt)
        cached = len(prompt) - len(rest)
        (uid,) = self.batch.insert(
            [rest],
            max_tokens=[max_tokens],
            caches=[cache],
            all_tokens=[prompt[:cached]],
            samplers=[make_request_sampler(request.sampling)],
            logits_processors=[make_request_processors(request.sampling)],
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
        )
        self.active[uid] = active
        self.uid_by_request[request.request_id] = uid
        sink({"type": "accepted", "prompt_tokens": len(prompt), "cached_tokens": cached})

    def _step_back(self, cache: list[Any], prompt: list[int]) -> tuple[list[Any] | None, list[int]]:
        """An exact cache hit still needs one token to compute logits from."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if can_trim_prompt_cache(cache):
            trim_prompt_cache(cache, 1)
            return cache, prompt[-1:]
        return None, prompt

    def step(self) -> None:
        _, responses = self.batch.next()
        finished: list[int] = []
        for response in responses:
            active = self.active.get(response.uid)
            if active is None:
                continue
            active.completion_tokens += 1
            if response.finish_reason != "stop":
                active.detokenizer.add_token(response.token)
            if response.finish_reason is not None:
                active.detokenizer.finalize()
            safe_text, matched = active.stops.feed(active.detokenizer.last_segment)
            if matched:
                finished.append(response.uid)
                self._finish(active, "stop", safe_text)
            elif response.finish_reason is not None:
                self._finish(active, response.finish_reason, safe_text + active.stops.flush())
                if response.prompt_cache is not None:
                    self.prefix_cache.insert_cache(self.key, list(response.all_tokens), response.prompt_cache)
            elif safe_text:
                active.sink({"type": "delta", "text": safe_text, "tokens": active.completion_tokens})
        if finished:
            self.batch.remove(finished)

    def _finish(self, active: ActiveRequest, reason: str, text: str) -> None:
        self.active.pop(active.uid, None)
        self.uid_by_request.pop(active.request.request_id, None)
        self.release()
        active.sink(
            finish_event(
                reason,
                text=text,
                prompt=active.prompt_tokens,
                completion=active.completion_tokens,
                cached=active.cached_tokens,
            )
        )

    def cancel(self, request_id: str) -> None:
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

    def fail_all(self, error: EngineError) -> None:
        for active in list(self.active.values()):
            self.active.pop(active.uid, None)
            self.uid_by_request.pop(active.request.request_id, None)
            self.release()
            active.sink(error.as_event())
        if self.model is not None:
            self.batch = self._new_batch()


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
