"""Turn validated /v1 bodies into engine requests, and engine events into OpenAI bodies."""

from __future__ import annotations

import time
import uuid
from typing import Any

from catalog.models import ModelKind, Profile
from inference.engine.types import GenerationRequest, ModelSpec, SamplingParams
from inference.errors import OpenAIError
from inference.schemas import ChatCompletionRequest, CompletionRequest, ImagePart, SamplingFields, TextPart

DEFAULT_TEMPERATURE = 1.0
# Tokens a chat template adds around each message (role markers, separators), at most.
TEMPLATE_TOKENS_PER_MESSAGE = 16
# Tokens one image may become in a vision prompt, at most (for the usage reservation before tokenizing).
IMAGE_TOKENS_BOUND = 4096
# Which endpoints each kind of model serves.
SERVES = {
    "chat completions": {ModelKind.TEXT, ModelKind.VISION},
    "text completions": {ModelKind.TEXT},
    "embeddings": {ModelKind.EMBEDDING},
}


def require_kind(profile: Profile, what: str) -> None:
    """A request of the wrong kind (chat to an embedding model) gets a 400 saying so."""
    kind = profile.local_model.kind
    if kind not in SERVES[what]:
        endpoint = {
            ModelKind.EMBEDDING: "/v1/embeddings",
            ModelKind.TEXT: "/v1/chat/completions or /v1/completions",
            ModelKind.VISION: "/v1/chat/completions",
        }[ModelKind(kind)]
        raise OpenAIError(
            f"The model '{profile.name}' is a {kind} model and does not serve {what}; use {endpoint}.",
            param="model",
            code="wrong_model_kind",
        )


def message_bytes(message: dict[str, Any]) -> int:
    content = message["content"]
    if isinstance(content, str):
        return len(content.encode())
    return sum(len(str(part.get("text", "")).encode()) for part in content)


def model_spec_for(profile: Profile) -> ModelSpec:
    return {
        "key": profile.local_model.path,
        "path": profile.local_model.path,
        "context_length": profile.effective_context_length(),
        "kind": profile.local_model.kind,  # type: ignore[typeddict-item]
        "pinned": profile.pinned,
        "idle_ttl": float(profile.idle_ttl_seconds) if profile.idle_ttl_seconds else None,
    }


def refuse_unsupported(payload: SamplingFields, *, images: bool = False) -> None:
    """Fields the engine does not honour yet: a 400 naming them, never a silent ignore."""
    if payload.n is not None and payload.n > 1:
        raise OpenAIError("n > 1 is not supported yet; send one request per choice.", param="n")
    if payload.logprobs not in (None, False, 0):
        raise OpenAIError("logprobs are not supported yet.", param="logprobs")
    if payload.top_logprobs:
        raise OpenAIError("top_logprobs is not supported yet.", param="top_logprobs")
    if isinstance(payload, ChatCompletionRequest):
        if payload.tools:
            raise OpenAIError("Tool calling is not supported yet.", param="tools")
        if payload.tool_choice not in (None, "none"):
            raise OpenAIError("Tool calling is not supported yet.", param="tool_choice")
        if payload.response_format is not None and payload.response_format.type != "text":
            raise OpenAIError(
                f"response_format {payload.response_format.type!r} is not supported yet; only 'text' is.",
                param="response_format",
            )
        for index, message in enumerate(payload.messages):
            if message.role == "tool" or message.tool_calls:
                raise OpenAIError("Tool calling is not supported by local models yet.", param=f"messages[{index}]")
            if isinstance(message.content, list):
                for part_index, part in enumerate(message.content):
                    if isinstance(part, ImagePart) and not images:
                        raise OpenAIError(
                            "Image inputs are not supported by this model.",
                            param=f"messages[{index}].content[{part_index}]",
                        )
    if isinstance(payload, CompletionRequest):
        if payload.echo:
            raise OpenAIError("echo is not supported yet.", param="echo")
        if payload.suffix:
            raise OpenAIError("suffix is not supported.", param="suffix")
        if payload.best_of not in (None, 1):
            raise OpenAIError("best_of is not supported.", param="best_of")


def sampling_params(payload: SamplingFields, profile: Profile) -> SamplingParams:
    temperature = payload.temperature
    if temperature is None:
        temperature = profile.default_temperature if profile.default_temperature is not None else DEFAULT_TEMPERATURE
    top_p = payload.top_p if payload.top_p is not None else (profile.default_top_p or 1.0)
    return SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=payload.top_k or 0,
        min_p=payload.min_p or 0.0,
        presence_penalty=payload.presence_penalty or 0.0,
        frequency_penalty=payload.frequency_penalty or 0.0,
        repetition_penalty=payload.repetition_penalty or 1.0,
        logit_bias={int(token): bias for token, bias in (payload.logit_bias or {}).items()},
        # mx.random.key takes an unsigned 64-bit seed; a negative seed maps to its two's complement.
        seed=payload.seed % (1 << 64) if payload.seed is not None else None,
    )


def engine_messages(payload: ChatCompletionRequest, *, vision: bool) -> list[dict[str, Any]]:
    """Messages as the engine renders them: text, or for a vision model text and image placeholders in order."""
    messages: list[dict[str, Any]] = []
    for message in payload.messages:
        role = "system" if message.role == "developer" else message.role
        if vision and isinstance(message.content, list) and any(isinstance(p, ImagePart) for p in message.content):
            parts = [
                {"type": "text", "text": part.text} if isinstance(part, TextPart) else {"type": "image"}
                for part in message.content
            ]
            messages.append({"role": role, "content": parts})
        else:
            messages.append({"role": role, "content": message.text()})
    return messages


def image_urls(payload: ChatCompletionRequest) -> list[tuple[str, str]]:
    """(url, param) of every image part, in order."""
    found = []
    for index, message in enumerate(payload.messages):
        if isinstance(message.content, list):
            for part_index, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    found.append((part.image_url.url, f"messages[{index}].content[{part_index}].image_url.url"))
    return found


async def chat_images(payload: ChatCompletionRequest) -> list[Any]:
    """The request's images, decoded or fetched (size cap, timeout, no private addresses); 400 when one fails."""
    from django.conf import settings

    from inference.images import ImageError, load_image

    images = []
    for url, param in image_urls(payload):
        try:
            images.append(
                await load_image(
                    url,
                    max_bytes=settings.MLXHUB_IMAGE_MAX_BYTES,
                    timeout=settings.MLXHUB_IMAGE_FETCH_TIMEOUT,
                    allow_private=settings.MLXHUB_IMAGE_ALLOW_PRIVATE,
                )
            )
        except ImageError as exc:
            raise OpenAIError(str(exc), param=param, code="invalid_image") from exc
    return images


def chat_request(
    *, payload: ChatCompletionRequest, profile: Profile, request_id: str, images: list[Any] | None = None
) -> GenerationRequest:
    vision = profile.local_model.kind == ModelKind.VISION
    refuse_unsupported(payload, images=vision)
    both_given = payload.max_completion_tokens is not None and payload.max_tokens is not None
    if both_given and payload.max_completion_tokens != payload.max_tokens:
        raise OpenAIError(
            "max_tokens and max_completion_tokens disagree; send only max_completion_tokens.",
            param="max_completion_tokens",
        )
    messages = engine_messages(payload, vision=vision)
    if profile.system_prompt and not any(message["role"] == "system" for message in messages):
        messages.insert(0, {"role": "system", "content": profile.system_prompt})
    max_tokens = payload.max_completion_tokens or payload.max_tokens or profile.default_max_tokens
    return GenerationRequest(
        request_id=request_id,
        model=model_spec_for(profile),
        messages=messages,
        max_tokens=max_tokens,
        stop=payload.stop_list(),
        sampling=sampling_params(payload, profile),
        images=images or [],
    )


def completion_request(*, payload: CompletionRequest, profile: Profile, request_id: str) -> GenerationRequest:
    refuse_unsupported(payload)
    prompt = payload.prompt
    text: str | None = None
    tokens: list[int] | None = None
    if isinstance(prompt, str):
        text = prompt
    elif prompt and all(isinstance(item, str) for item in prompt):
        if len(prompt) > 1:
            raise OpenAIError("Only one prompt per request is supported yet.", param="prompt")
        text = str(prompt[0])
    elif prompt and all(isinstance(item, int) for item in prompt):
        tokens = [int(item) for item in prompt]  # type: ignore[arg-type]
    elif prompt and all(isinstance(item, list) for item in prompt):
        if len(prompt) > 1:
            raise OpenAIError("Only one prompt per request is supported yet.", param="prompt")
        tokens = list(prompt[0])  # type: ignore[arg-type]
    else:
        raise OpenAIError("The prompt is empty.", param="prompt")
    return GenerationRequest(
        request_id=request_id,
        model=model_spec_for(profile),
        prompt=text,
        prompt_tokens=tokens,
        max_tokens=payload.max_tokens or profile.default_max_tokens or 16,
        stop=payload.stop_list(),
        sampling=sampling_params(payload, profile),
    )


def new_completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def now() -> int:
    return int(time.time())


def engine_start() -> None:
    """Start this process's engine and queue the pinned profiles for loading."""
    import logging

    from inference.runtime import engine_client

    client = engine_client()
    try:
        pinned = list(Profile.objects.select_related("local_model").filter(enabled=True, pinned=True))
    except Exception:  # no tables yet (before migrate): nothing to preload
        logging.getLogger(__name__).warning("could not read profiles to preload", exc_info=True)
        return
    for profile in pinned:
        client.preload(model_spec_for(profile))
