"""Image + text chat generation with mlx-vlm, one token per call.

Plain Python, no Django. ``VisionRuntime.start`` prepares a request (chat
template, image preprocessing, tokenization) and returns a ``VisionGeneration``
whose ``step`` produces exactly one token, so the engine thread can interleave
several generations with other models' decode steps. All MLX work happens on
the calling thread: load, start and step a model on the same thread (mlx-vlm's
generation stream is thread-local), and start no thread here.

Each generation owns its KV cache. Models that keep per-generation position
state on the language model object (mRoPE models such as Qwen2-VL keep
``_rope_deltas`` and ``_position_ids``) have that state saved and restored
around every step, so interleaved generations do not see each other's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten
from PIL import Image

from inference.engine.text import keeping_leading_space

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

DEFAULT_CONTEXT_LENGTH = 4096
# Tokenizers without a limit report a huge sentinel (int(1e30)) as model_max_length.
UNBOUNDED_TOKENIZER_LENGTH = 10_000_000
IMAGE_PART_TYPES = ("image", "image_url", "input_image")
TEXT_PART_TYPES = ("text", "input_text")
# Model types whose prompt mlx-vlm 0.7.10 builds from the last message alone (prompt_utils.apply_chat_template).
LAST_MESSAGE_ONLY = ("paligemma", "florence2", "falcon_ocr")
# Attributes some mlx-vlm language models set during prefill and read while decoding.
PER_GENERATION_STATE = ("_rope_deltas", "_position_ids")


def greedy(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


def _detokenizer_class(folder: Path) -> Any:
    """mlx-lm's per-token streaming detokenizer for this tokenizer.json (mlx-vlm's BPE one
    only emits text at word boundaries)."""
    from mlx_lm.tokenizer_utils import (
        BPEStreamingDetokenizer,
        NaiveStreamingDetokenizer,
        SPMStreamingDetokenizer,
    )

    try:
        decoder = json.loads((folder / "tokenizer.json").read_text()).get("decoder") or {}
    except (OSError, ValueError):
        return NaiveStreamingDetokenizer
    if decoder.get("type") == "ByteLevel":
        return BPEStreamingDetokenizer
    steps = (decoder.get("decoders") or []) if decoder.get("type") == "Sequence" else []
    replaces_metaspace = any(step.get("type") == "Replace" and step.get("content") == " " for step in steps)
    falls_back_to_bytes = any(step.get("type") == "ByteFallback" for step in steps)
    if replaces_metaspace and falls_back_to_bytes:
        return SPMStreamingDetokenizer
    return NaiveStreamingDetokenizer


def _context_length(config: dict[str, Any], tokenizer: Any) -> int:
    for section in (config.get("text_config") or {}, config):
        for name in ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"):
            if isinstance(section.get(name), int) and section[name] > 0:
                return int(section[name])
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < UNBOUNDED_TOKENIZER_LENGTH:
        return limit
    return DEFAULT_CONTEXT_LENGTH


def chat_messages(messages: Sequence[dict[str, Any]], image_count: int) -> list[dict[str, Any]]:
    """OpenAI-style messages as mlx-vlm's chat helpers take them: text parts kept, each image
    part (``image``/``image_url``/``input_image``, its payload already decoded by the caller)
    turned into ``{"type": "image"}`` in place. Raises ValueError when the image parts do not
    match the images given, or appear outside user messages."""
    converted: list[dict[str, Any]] = []
    seen_images = 0
    for message in messages:
        content = message.get("content")
        role = message.get("role", "user")
        if not isinstance(content, list):
            converted.append({**message, "content": "" if content is None else content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in IMAGE_PART_TYPES:
                if role != "user":
                    raise ValueError(f"Images are accepted in user messages only, not in a {role} message.")
                parts.append({"type": "image"})
                seen_images += 1
            elif kind in TEXT_PART_TYPES:
                parts.append({"type": "text", "text": str(part.get("text") or "")})
            else:
                raise ValueError(f"Content parts of type {kind!r} are not supported by vision models.")
        converted.append({**message, "content": parts})
    if seen_images != image_count:
        raise ValueError(f"The messages hold {seen_images} image parts but {image_count} images were given.")
    return converted


class VisionRuntime:
    """One loaded mlx-vlm model and its processor."""

    def __init__(self, path: str) -> None:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            # mlx_vlm.load treats a missing folder as a Hub repo id and downloads it.
            raise FileNotFoundError(f"{folder} is not a model folder (no config.json).")
        from mlx_vlm import load

        self.path = str(folder)
        self.model, self.processor = load(self.path)
        parameters = cast(list[tuple[str, mx.array]], tree_flatten(self.model.parameters()))
        mx.eval([array for _, array in parameters])
        self.weights_bytes = int(sum(array.nbytes for _, array in parameters))
        self.tokenizer: Any = getattr(self.processor, "tokenizer", self.processor)
        self.config = json.loads((folder / "config.json").read_text())
        self.context_length = _context_length(self.config, self.tokenizer)
        self._detokenizer = keeping_leading_space(_detokenizer_class(folder)(self.tokenizer))
        criteria = getattr(self.tokenizer, "stopping_criteria", None)
        self.eos_token_ids = {int(token) for token in getattr(criteria, "eos_token_ids", None) or []}
        eos_token_id = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos_token_id, int):
            self.eos_token_ids.add(eos_token_id)

    def prompt(self, messages: Sequence[dict[str, Any]], image_count: int) -> str:
        """The prompt text, with the model's image placeholders, before the processor expands them."""
        from mlx_vlm.prompt_utils import apply_chat_template

        converted = chat_messages(messages, image_count)
        if self.model.config.model_type in LAST_MESSAGE_ONLY and converted:
            last = converted[-1].get("content")
            in_last = sum(1 for part in last if part.get("type") == "image") if isinstance(last, list) else 0
            if in_last != image_count:
                # The other images would still reach the model, in place of the last message's own.
                raise ValueError(
                    "This model reads only the last message, so every image must be in it; "
                    f"{image_count - in_last} of {image_count} are in earlier messages."
                )
        prompt = apply_chat_template(self.processor, self.model.config, converted, num_images=image_count)
        return prompt if isinstance(prompt, str) else str(prompt)

    def start(
        self,
        messages: Sequence[dict[str, Any]],
        images: Sequence[Image.Image],
        *,
        max_tokens: int,
        sampler: Sampler | None = None,
        logits_processors: list[LogitsProcessor] | None = None,
    ) -> VisionGeneration:
        """Prepare one generation: chat template, image preprocessing, tokenization.

        Nothing runs on the model yet (the prefill is the first ``step()``), so a caller can
        compare ``prompt_tokens`` with ``context_length`` and close a generation that does not
        fit at no cost; this method does not check the context itself. ``sampler`` and
        ``logits_processors`` have mlx-lm's forms (``make_sampler``, ``make_logits_processors``);
        no sampler means greedy. Raises ValueError for messages or images the model cannot take.
        """
        from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1.")
        prompt = self.prompt(messages, len(images))
        model_config = self.model.config
        inputs = prepare_inputs(
            self.processor,
            images=list(images) or None,
            prompts=prompt,
            image_token_index=getattr(model_config, "image_token_index", None),
            add_special_tokens=should_add_special_tokens(model_config.model_type, self.processor),
        )
        input_ids = inputs["input_ids"]
        prompt_tokens = int(input_ids.size)
        # Whatever else the processor produced (image grids, token type ids) goes to the model,
        # as mlx-vlm's own stream_generate passes it.
        extra = {
            key: value for key, value in inputs.items() if key not in ("input_ids", "pixel_values", "attention_mask")
        }
        # One detokenizer per generation (building the token map is the slow part, so copy it).
        detokenizer = keeping_leading_space(copy.copy(self._detokenizer))
        detokenizer.reset()
        return VisionGeneration(
            runtime=self,
            input_ids=input_ids,
            pixel_values=inputs.get("pixel_values"),
            mask=inputs.get("attention_mask"),
            extra=extra,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            sampler=sampler or greedy,
            logits_processors=logits_processors,
            detokenizer=detokenizer,
        )


class VisionGeneration:
    """One request's generation, advanced one token per ``step()``.

    ``max_tokens`` may be changed between steps (the engine lowers it to fit the context).
    """

    def __init__(
        self,
        *,
        runtime: VisionRuntime,
        input_ids: mx.array,
        pixel_values: Any,
        mask: Any,
        extra: dict[str, Any],
        prompt_tokens: int,
        max_tokens: int,
        sampler: Sampler,
        logits_processors: list[LogitsProcessor] | None,
        detokenizer: Any,
    ) -> None:
        from mlx_vlm.generate import generate_step

        self.runtime = runtime
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.tokens: list[int] = []
        self.finish_reason: str | None = None
        self._detokenizer = detokenizer
        self._state: dict[str, Any] = dict.fromkeys(PER_GENERATION_STATE)
        self._steps: Generator[tuple[Any, mx.array], None, None] | None = generate_step(
            input_ids,
            runtime.model,
            pixel_values,
            mask,
            # Unbounded here: step() enforces self.max_tokens, which the caller may change.
            max_tokens=-1,
            sampler=sampler,
            logits_processors=logits_processors,
            **extra,
        )

    @property
    def generated_tokens(self) -> int:
        return len(self.tokens)

    def step(self) -> tuple[str, int, str | None]:
        """Generate one token: (text to emit, token id, finish reason or None).

        The first call runs the prefill (image encoder and prompt). The texts of all
        steps concatenate to the decoded completion; a stop token's own text is not
        emitted. After a finish reason the generation is closed.
        """
        if self._steps is None:
            raise RuntimeError("This generation has finished.")
        language_model = getattr(self.runtime.model, "language_model", self.runtime.model)
        swapped_out = self._swap_state(language_model, self._state)
        try:
            token_value, _ = next(self._steps)
        finally:
            self._state = self._swap_state(language_model, swapped_out)
        token = int(token_value)
        self.tokens.append(token)
        if token in self.runtime.eos_token_ids:
            self._detokenizer.finalize()
            return self._finish(self._detokenizer.last_segment, token, "stop")
        self._detokenizer.add_token(token)
        if len(self.tokens) >= self.max_tokens:
            self._detokenizer.finalize()
            return self._finish(self._detokenizer.last_segment, token, "length")
        return self._detokenizer.last_segment, token, None

    @staticmethod
    def _swap_state(language_model: Any, state: dict[str, Any]) -> dict[str, Any]:
        """Put this generation's position state on the model; return what was there."""
        previous = {}
        for name, value in state.items():
            if hasattr(language_model, name):
                previous[name] = getattr(language_model, name)
                setattr(language_model, name, value)
        return previous

    def _finish(self, text: str, token: int, reason: str) -> tuple[str, int, str]:
        self.finish_reason = reason
        self.close()
        return text, token, reason

    def close(self) -> None:
        """Drop the KV cache and the pending lookahead step; safe to call twice."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
