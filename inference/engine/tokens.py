"""Prompts rendered to token ids the one way the engine does it, and counted without loading a model.

``render_prompt`` is what a text runner feeds its batch; ``count_prompt_tokens`` gives the same
count for a model that is not loaded (Anthropic's count_tokens), from its tokenizer alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from inference.engine.types import EngineError, GenerationRequest

# Tokenizers kept for counting, by model folder (each holds its vocabulary: a few MB).
COUNTING_TOKENIZERS = 8


def template_error(exc: Exception) -> EngineError:
    """A chat template that refuses the messages ("System role not supported") is the request's fault."""
    reason = str(exc).strip() or type(exc).__name__
    return EngineError(
        f"This model's chat template cannot render these messages: {reason}",
        status=400,
        code="invalid_request_error",
        param="messages",
    )


def render_prompt(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The prompt's token ids: given ids, a raw prompt, or the messages through the chat template."""
    if request.prompt_tokens is not None:
        return list(request.prompt_tokens)
    if request.messages is None:
        return list(tokenizer.encode(request.prompt or ""))
    if tokenizer.chat_template is None:
        raise EngineError(
            "This model has no chat template; use /v1/completions.", status=400, code="invalid_request_error"
        )
    from jinja2 import TemplateError

    try:
        ids = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
    except (TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise template_error(exc) from exc
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    return list(ids)


@functools.lru_cache(maxsize=COUNTING_TOKENIZERS)
def _tokenizer(path: str) -> Any:
    from pathlib import Path

    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(Path(path))  # what mlx_lm.load gives a runner: the same template and special tokens


def count_prompt_tokens(request: GenerationRequest) -> int:
    return len(render_prompt(_tokenizer(request.model["path"]), request))
