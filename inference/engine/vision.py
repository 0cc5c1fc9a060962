"""Vision models (mlx-vlm): each request generates one token per engine step, interleaved with the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from inference.engine.config import KernelConfig
from inference.engine.kernels import prepare_model
from inference.engine.pictures import decode_rgb
from inference.engine.runner import Release, Runner
from inference.engine.sampling import make_request_processors, make_request_sampler
from inference.engine.stops import StopStringMatcher
from inference.engine.text import check_context, parameter_bytes
from inference.engine.tokens import template_error
from inference.engine.types import EngineError, EventSink, GenerationRequest, ModelSpec, finish_event


@dataclass
class VisionActive:
    request: GenerationRequest
    sink: EventSink
    generation: Any  # vision_runtime.VisionGeneration
    stops: StopStringMatcher
    prompt_tokens: int
    completion_tokens: int = 0


class VisionRunner(Runner):
    kind = "vision"

    def __init__(self, spec: ModelSpec, release: Release, *, kernels: KernelConfig) -> None:
        from inference.engine.vision_runtime import VisionRuntime

        super().__init__(spec, release)
        self.runtime = VisionRuntime(spec["path"])
        self.context_length = spec.get("context_length") or self.runtime.context_length
        self.kernel = prepare_model(self.runtime.model, path=spec["path"], plan=kernels)
        self.weights_bytes = self.runtime.weights_bytes = parameter_bytes(self.runtime.model)
        self.active: dict[str, VisionActive] = {}

    @property
    def requests(self) -> int:
        return len(self.active)

    def snapshot(self) -> dict[str, Any]:
        return {"decoding": len(self.active), "waiting": 0}

    def admit(self, request: Any, sink: EventSink) -> None:
        if not isinstance(request, GenerationRequest):
            raise self.wrong_kind("embeddings")
        if request.messages is None:
            raise EngineError(
                "A vision model serves chat completions; send messages to /v1/chat/completions.",
                status=400,
                code="wrong_model_kind",
                param="model",
            )
        images = [decode_rgb(data) for data in request.images]
        try:
            # Renders the template and preprocesses the images; the prefill runs in the first step.
            generation = self.runtime.start(
                request.messages,
                images,
                max_tokens=request.max_tokens or 1,
                sampler=make_request_sampler(request.sampling),
                logits_processors=make_request_processors(request.sampling),
            )
        except TemplateError as exc:
            raise template_error(exc) from exc
        except ValueError as exc:  # images that do not match the parts, or where this model cannot read them
            raise EngineError(str(exc), status=400, code="invalid_request_error", param="messages") from exc
        try:
            max_tokens = check_context(
                self.context_length, generation.prompt_tokens, request.max_tokens, param="messages"
            )
        except EngineError:
            generation.close()
            raise
        generation.max_tokens = max_tokens
        self.active[request.request_id] = VisionActive(
            request=request,
            sink=sink,
            generation=generation,
            stops=StopStringMatcher(request.stop),
            prompt_tokens=generation.prompt_tokens,
        )
        sink({"type": "accepted", "prompt_tokens": generation.prompt_tokens, "cached_tokens": 0})

    def step(self) -> None:
        for active in list(self.active.values()):
            text, _token, finish_reason = active.generation.step()
            active.completion_tokens += 1
            safe_text, matched = active.stops.feed(text)
            if matched:
                self._finish(active, "stop", safe_text)
            elif finish_reason is not None:
                self._finish(active, finish_reason, safe_text + active.stops.flush())
            elif safe_text:
                active.sink({"type": "delta", "text": safe_text, "tokens": active.completion_tokens})

    def _finish(self, active: VisionActive, reason: str, text: str) -> None:
        self.active.pop(active.request.request_id, None)
        active.generation.close()
        self.release()
        active.sink(finish_event(reason, text=text, prompt=active.prompt_tokens, completion=active.completion_tokens))

    def cancel(self, request_id: str) -> None:
        active = self.active.get(request_id)
        if active is not None:
            self._finish(active, "cancelled", "")

    def fail_all(self, error: EngineError) -> None:
        for active in list(self.active.values()):
            self.active.pop(active.request.request_id, None)
            active.generation.close()
            self.release()
            active.sink(error.as_event())

    def close(self) -> None:
        self.runtime = None  # type: ignore[assignment]
