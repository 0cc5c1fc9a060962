"""A vision model's prompt counted without loading its weights (Anthropic's count_tokens with images).

The same steps as ``VisionRuntime.start``: the chat template with the model's image placeholders, then the
processor, which expands each image into the tokens the model will read (a fixed count for PaliGemma, one
that depends on the image's size for dynamic-resolution models), so the images themselves are decoded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from inference.engine.pictures import decode_rgb
from inference.engine.tokens import history_as_text
from inference.engine.types import EngineError, GenerationRequest
from inference.engine.vision_runtime import chat_messages

# Processors kept for counting, by model folder.
COUNTING_PROCESSORS = 4


@functools.lru_cache(maxsize=COUNTING_PROCESSORS)
def _processor(path: str) -> tuple[Any, dict[str, Any]]:
    from mlx_vlm.utils import load_config, load_image_processor, load_processor

    folder = Path(path)  # mlx-vlm's loaders join paths with "/"
    config = load_config(folder)
    processor = load_processor(folder, True, eos_token_ids=config.get("eos_token_id"))
    image_processor = load_image_processor(folder)
    if image_processor is not None:  # as mlx_vlm.load sets it
        processor.image_processor = image_processor
    return processor, config


def count_vision_prompt_tokens(request: GenerationRequest) -> int:
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    processor, config = _processor(request.model["path"])
    images = [decode_rgb(data) for data in request.images]
    try:
        converted = chat_messages(history_as_text(request.messages or []), len(images))
        prompt = apply_chat_template(processor, config, converted, num_images=len(images))
        inputs = prepare_inputs(
            processor,
            images=images or None,
            prompts=prompt if isinstance(prompt, str) else str(prompt),
            image_token_index=config.get("image_token_index"),
            add_special_tokens=should_add_special_tokens(config["model_type"], processor),
        )
    except ValueError as exc:
        raise EngineError(str(exc), status=400, code="invalid_request_error", param="messages") from exc
    return int(inputs["input_ids"].size)
