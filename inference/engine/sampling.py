"""Per-request samplers and logits processors for one shared batch.

Each request owns its random key, so a seeded request draws the same tokens
whatever else shares the batch.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler, make_logits_processors

from inference.engine.types import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

# Penalties look this far back, as mlx_lm.server does.
PENALTY_CONTEXT = 64


def make_request_sampler(params: SamplingParams) -> Sampler:
    if params.temperature == 0:
        return greedy_sampler  # shared object: BatchGenerator samples all-greedy batches in one call
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    key_holder = [mx.random.key(seed)]
    temperature = params.temperature

    def sampler(logprobs: mx.array) -> mx.array:
        key_holder[0], draw_key = mx.random.split(key_holder[0])
        if 0 < params.top_p < 1.0:
            logprobs = apply_top_p(logprobs, params.top_p)
        if params.min_p > 0:
            logprobs = apply_min_p(logprobs, params.min_p)
        if 0 < params.top_k < logprobs.shape[-1]:  # a top_k past the vocabulary keeps everything
            logprobs = apply_top_k(logprobs, params.top_k)
        return mx.random.categorical(logprobs * (1.0 / temperature), key=draw_key)

    return sampler


def make_request_processors(params: SamplingParams) -> list[LogitsProcessor]:
    return make_logits_processors(
        logit_bias=params.logit_bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        repetition_context_size=PENALTY_CONTEXT,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=PENALTY_CONTEXT,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=PENALTY_CONTEXT,
    )
