"""Validated /v1 bodies turned into engine requests, and what each may cost before it is tokenized."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from catalog.models import ModelKind, Profile
from inference.conversations import chat_conversation
from inference.engine.types import EmbeddingRequest, EngineRequest, GenerationRequest, ModelSpec, SamplingParams
from inference.errors import OpenAIError
from inference.schemas.openai import (
    MAX_CHOICES,
    MAX_PROMPTS,
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
)
from inference.thinking import chat_thinking
from inference.tooling import chat_tool_plan

DEFAULT_TEMPERATURE = 1.0
# Tokens a chat template adds around each message (role markers, separators), at most.
TEMPLATE_TOKENS_PER_MESSAGE = 16
# Tokens a template's tool instructions add around the tools' definitions, at most.
TOOLS_TEMPLATE_TOKENS = 512
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


def model_spec_for(profile: Profile) -> ModelSpec:
    return {
        "key": profile.local_model.path,
        "path": profile.local_model.path,
        "context_length": profile.effective_context_length(),
        "kind": profile.local_model.kind,  # type: ignore[typeddict-item]
        "pinned": profile.pinned,
        "idle_ttl": float(profile.idle_ttl_seconds) if profile.idle_ttl_seconds else None,
    }


def refuse_unsupported(payload: SamplingFields) -> None:
    """Fields the engine does not honour yet: a 400 naming them, never a silent ignore."""
    payload.refuse_fields()
    if payload.n is not None and payload.n > MAX_CHOICES:
        raise OpenAIError(f"n may be at most {MAX_CHOICES}.", param="n")
    if isinstance(payload, ChatCompletionRequest) and "audio" in (payload.modalities or []):
        raise OpenAIError("Audio outputs are not supported: MLX Hub serves text and image models.", param="modalities")
    if isinstance(payload, CompletionRequest):
        if payload.suffix:
            raise OpenAIError("suffix is not supported.", param="suffix")
        best_of = payload.best_of or payload.n or 1
        if best_of < (payload.n or 1) or best_of > MAX_CHOICES:
            raise OpenAIError(f"best_of must be at least n and at most {MAX_CHOICES}.", param="best_of")
        if best_of > (payload.n or 1) and payload.stream:
            raise OpenAIError("best_of cannot be streamed (the best choices are known at the end).", param="best_of")
        if payload.max_tokens == 0 and not payload.echo:
            raise OpenAIError("max_tokens may be 0 only with echo (to score the prompt).", param="max_tokens")


def logprobs_wanted(payload: SamplingFields) -> int | None:
    """How many alternatives per token the request asks for (0: the chosen token's value only); None: none."""
    value = payload.logprobs
    if isinstance(payload, CompletionRequest):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
            raise OpenAIError(f"logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}.", param="logprobs")
        return value
    if value is not None and not isinstance(value, bool):
        raise OpenAIError("logprobs must be a boolean.", param="logprobs")
    if payload.top_logprobs and not value:
        raise OpenAIError("top_logprobs needs logprobs set to true.", param="top_logprobs")
    return (payload.top_logprobs or 0) if value else None


def sampling_params(payload: Any, profile: Profile) -> SamplingParams:
    """Sampling from a request body (OpenAI's or Anthropic's fields; missing ones take the defaults), the
    profile's defaults where the request is silent."""

    def field(name: str) -> Any:
        return getattr(payload, name, None)

    temperature = field("temperature")
    if temperature is None:
        temperature = profile.default_temperature if profile.default_temperature is not None else DEFAULT_TEMPERATURE
    top_p = field("top_p")
    if top_p is None:
        top_p = profile.default_top_p or 1.0
    seed = field("seed")
    return SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=field("top_k") or 0,
        min_p=field("min_p") or 0.0,
        presence_penalty=field("presence_penalty") or 0.0,
        frequency_penalty=field("frequency_penalty") or 0.0,
        repetition_penalty=field("repetition_penalty") or 1.0,
        logit_bias={int(token): bias for token, bias in (field("logit_bias") or {}).items()},
        # mx.random.key takes an unsigned 64-bit seed; a negative seed maps to its two's complement.
        seed=seed % (1 << 64) if seed is not None else None,
    )


def check_image_count(urls: list[tuple[str, str]]) -> None:
    """Refused before any reservation or fetch: a request may carry at most MLXHUB_MAX_IMAGES images."""
    limit = settings.MLXHUB_MAX_IMAGES
    if len(urls) > limit:
        raise OpenAIError(
            f"A request may carry at most {limit} images; this one has {len(urls)}.",
            param=urls[limit][1],
            code="too_many_images",
        )


async def fetch_images(urls: list[tuple[str, str]]) -> list[bytes]:
    """The request's images, fetched or decoded from data URLs and checked (size cap, timeout, no private
    addresses, pixels per image and in all); a 400 naming the part when one fails. Call after reserving."""
    from inference.images import ImageError, load_image

    images: list[bytes] = []
    total_pixels = 0
    for url, param in urls:
        try:
            image = await load_image(
                url,
                max_bytes=settings.MLXHUB_IMAGE_MAX_BYTES,
                timeout=settings.MLXHUB_IMAGE_FETCH_TIMEOUT,
                allow_private=settings.MLXHUB_IMAGE_ALLOW_PRIVATE,
                max_pixels=settings.MLXHUB_IMAGE_MAX_PIXELS,
            )
        except ImageError as exc:
            raise OpenAIError(str(exc), param=param, code="invalid_image") from exc
        total_pixels += image.pixels
        if total_pixels > settings.MLXHUB_IMAGE_MAX_TOTAL_PIXELS:
            raise OpenAIError(
                f"The images of this request hold more than {settings.MLXHUB_IMAGE_MAX_TOTAL_PIXELS} pixels "
                "in all; send fewer or smaller images.",
                param=param,
                code="invalid_image",
            )
        images.append(image.data)
    return images


def chat_request(
    *, payload: ChatCompletionRequest, profile: Profile, trace_id: str
) -> tuple[GenerationRequest, list[tuple[str, str]]]:
    """The engine request for a chat completion, and its images (url, param) to fetch after the reservation."""
    refuse_unsupported(payload)
    both_given = payload.max_completion_tokens is not None and payload.max_tokens is not None
    if both_given and payload.max_completion_tokens != payload.max_tokens:
        raise OpenAIError(
            "max_tokens and max_completion_tokens disagree; send only max_completion_tokens.",
            param="max_completion_tokens",
        )
    conversation = chat_conversation(payload, vision=profile.local_model.kind == ModelKind.VISION)
    if profile.local_model.kind == ModelKind.VISION:  # the vision runtime makes one choice, without logprobs
        for name, asked in (("n", (payload.n or 1) > 1), ("logprobs", bool(payload.logprobs))):
            if asked:
                raise OpenAIError(f"{name} is not served by vision models yet.", param=name)
    plan = chat_tool_plan(payload)
    max_tokens = payload.max_completion_tokens or payload.max_tokens or profile.default_max_tokens
    thinking = chat_thinking(payload)
    request = GenerationRequest(
        trace_id=trace_id,
        model=model_spec_for(profile),
        messages=conversation.with_system_prompt(profile.system_prompt),
        max_tokens=max_tokens,
        stop=payload.stop_list(),
        sampling=sampling_params(payload, profile),
        tools=plan.tools,
        grammar=plan.grammar,
        max_tool_calls=plan.max_calls,
        template_kwargs=thinking.template_kwargs,
        thinking=thinking.thinking,
        thinking_budget=thinking.budget,
        logprobs=logprobs_wanted(payload),
        n=payload.n or 1,
    )
    return request, conversation.images


def completion_request(*, payload: CompletionRequest, profile: Profile, trace_id: str) -> GenerationRequest:
    refuse_unsupported(payload)
    prompt = payload.prompt
    text: str | None = None
    tokens: list[int] | None = None
    several: list[str | list[int]] | None = None
    if isinstance(prompt, str):
        text = prompt
    elif prompt and all(isinstance(item, int) for item in prompt):
        tokens = [int(item) for item in prompt]  # type: ignore[arg-type]
    elif prompt and (all(isinstance(item, str) for item in prompt) or all(isinstance(item, list) for item in prompt)):
        if len(prompt) > MAX_PROMPTS:
            raise OpenAIError(f"A request may carry at most {MAX_PROMPTS} prompts.", param="prompt")
        several = [item if isinstance(item, str) else list(item) for item in prompt]  # type: ignore[arg-type]
        if len(several) == 1:
            item = several[0]
            text, tokens, several = (item, None, None) if isinstance(item, str) else (None, item, None)
    else:
        raise OpenAIError("The prompt is empty.", param="prompt")
    max_tokens = payload.max_tokens if payload.max_tokens is not None else profile.default_max_tokens or 16
    best_of = payload.best_of if (payload.best_of or 1) > (payload.n or 1) else None
    return GenerationRequest(
        trace_id=trace_id,
        model=model_spec_for(profile),
        prompt=text,
        prompt_tokens=tokens,
        prompts=several,
        max_tokens=max_tokens,
        stop=payload.stop_list(),
        sampling=sampling_params(payload, profile),
        # best_of: every choice is made, with its log-probabilities to rank them by (the renderer keeps n).
        logprobs=logprobs_wanted(payload) if not best_of else (logprobs_wanted(payload) or 0),
        n=best_of or payload.n or 1,
        echo=payload.echo,
    )


def embedding_request(*, inputs: list[str | list[int]], profile: Profile, trace_id: str) -> EmbeddingRequest:
    return EmbeddingRequest(trace_id=trace_id, model=model_spec_for(profile), inputs=inputs)


def embedding_cost(inputs: list[str | list[int]]) -> int:
    """Bytes bound the tokens of a string (byte-level tokenizers), plus the two special tokens of each input."""
    return sum((len(item.encode()) if isinstance(item, str) else len(item)) + 2 for item in inputs)


def _message_bytes(message: dict[str, Any]) -> int:
    content = message.get("content") or ""
    if isinstance(content, str):
        size = len(content.encode())
    else:
        size = sum(len(str(part.get("text", "")).encode()) for part in content)
    # Tool calls are rendered too (their names and arguments, in the template's markup).
    return size + sum(len(json.dumps(call).encode()) for call in message.get("tool_calls") or [])


def local_cost(request: EngineRequest, *, context_length: int | None, images: int = 0) -> int:
    """An upper bound on prompt + completion tokens, known before tokenizing.

    Byte-level BPE never makes more tokens than bytes (plus the chat template's few special
    tokens, the two an embedding input gets), so reserving bytes + max_tokens cannot under-reserve.
    """
    if isinstance(request, EmbeddingRequest):
        return embedding_cost(request.inputs)
    if request.prompts is not None:  # byte-level BPE: no more tokens than bytes (+ a BOS)
        prompt = sum(len(item) if isinstance(item, list) else len(item.encode()) + 1 for item in request.prompts)
    elif request.prompt_tokens is not None:
        prompt = len(request.prompt_tokens)
    elif request.messages is not None:
        prompt = sum(_message_bytes(m) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
        prompt += IMAGE_TOKENS_BOUND * images
        # The tools' definitions are rendered into the prompt (by the template, or as a system message).
        prompt += len(json.dumps(request.tools or []).encode()) + TOOLS_TEMPLATE_TOKENS * bool(request.tools)
    else:
        prompt = len((request.prompt or "").encode()) + 1
    if context_length:
        prompt = min(prompt, context_length)
    completion = request.max_tokens if request.max_tokens is not None else max(0, (context_length or 0) - prompt)
    return prompt + completion * request.n * (len(request.prompts) if request.prompts is not None else 1)
