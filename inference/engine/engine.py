"""The engine thread: one continuous batch per loaded model.

All MLX work (load, prefill, decode) happens on the one thread started by
``Engine.start``: MLX streams belong to the thread that made them. Other
threads only put commands on a queue and read ``stats()``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from inference.engine.kernels import prepare_model
from inference.engine.sampling import make_request_processors, make_request_sampler
from inference.engine.stops import StopStringMatcher
from inference.engine.types import (
    EngineError,
    EngineEvent,
    EventSink,
    GenerationRequest,
    ModelSpec,
)

logger = logging.getLogger(__name__)

# How long the idle engine thread sleeps between looks at its command queue.
IDLE_POLL_SECONDS = 0.5
DEFAULT_CONTEXT_LENGTH = 4096


@dataclass
class EngineConfig:
    max_batch: int = 32  # sequences decoding together per model
    max_queue: int = 64  # requests waiting beyond the batch, per model
    prefill_batch: int = 8
    # Prefill runs in chunks of this many tokens between decode steps, so a long
    # prompt delays the streams already decoding by one chunk, not the whole prompt.
    prefill_step: int = 256
    prefix_cache_bytes: int = 512 * 1024 * 1024


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


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    context_length: int
    batch: Any  # mlx_lm BatchGenerator
    stop_sequences: Any
    active: dict[int, ActiveRequest] = field(default_factory=dict)
    uid_by_request: dict[str, int] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    weights_bytes: int = 0  # measured from the loaded arrays, not guessed from a parameter count
    kernel: dict[str, Any] = field(default_factory=dict)  # what kernels.prepare_model reported
    published: tuple[Any, ...] = ()  # what _publish_stats last wrote, to skip unchanged decode steps


def _context_length(path: str, override: int | None) -> int:
    if override:
        return override
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_CONTEXT_LENGTH
    for name in ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"):
        if isinstance(config.get(name), int):
            return int(config[name])
    return DEFAULT_CONTEXT_LENGTH


def _keeping_leading_space(detokenizer: Any) -> Any:
    """mlx-lm's streaming detokenizers drop the first token's leading space (a chat-UI habit);
    an API must return exactly what the model produced (" the" after "once upon a time")."""
    if hasattr(detokenizer, "trim_space"):
        detokenizer.trim_space = False
    if hasattr(detokenizer, "_maybe_trim_space"):
        detokenizer._maybe_trim_space = lambda text: text
    return detokenizer


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._models: dict[str, LoadedModel] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        # Guarded by _lock: read from web threads, written by the engine thread.
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._prefix_cache: Any = None
        self.steps = 0

    # ---- called from any thread -------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=60)

    def stop(self) -> None:
        self._stopping.set()
        self._commands.put(("wake", None))
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def submit(self, request: GenerationRequest, sink: EventSink) -> None:
        """Queue a request; raises EngineError(429) when the model's queue is full."""
        key = request.model["key"]
        limit = self.config.max_batch + self.config.max_queue
        with self._lock:
            in_flight = self._in_flight.get(key, 0)
            if in_flight >= limit:
                raise EngineError(
                    f"The queue for this model is full ({in_flight} requests in flight); retry shortly.",
                    status=429,
                    code="queue_full",
                )
            self._in_flight[key] = in_flight + 1
        self._commands.put(("submit", (request, sink)))

    def cancel(self, request_id: str, model_key: str) -> None:
        self._commands.put(("cancel", (request_id, model_key)))

    def preload(self, spec: ModelSpec) -> None:
        self._commands.put(("load", spec))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "alive": self.alive,
                "steps": self.steps,
                "models": {key: dict(value) for key, value in self._stats.items()},
                "in_flight": dict(self._in_flight),
            }

    # ---- the engine thread ----------------------------------------------------------

    def _run(self) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self._prefix_cache = LRUPromptCache(max_size=1 << 30, max_bytes=self.config.prefix_cache_bytes)
        self._ready.set()
        while not self._stopping.is_set():
            busy = any(loaded.active for loaded in self._models.values())
            self._drain_commands(block=not busy)
            for loaded in list(self._models.values()):
                if loaded.active:
                    try:
                        self._step(loaded)
                    except Exception:  # the engine thread must survive any request
                        logger.exception("engine step failed for %s", loaded.spec["key"])
                        self._reset_batch(loaded, "The engine failed while generating.")
        for loaded in self._models.values():
            for active in list(loaded.active.values()):
                self._finish(loaded, active, "cancelled", "")

    def _drain_commands(self, *, block: bool) -> None:
        try:
            command = self._commands.get(timeout=IDLE_POLL_SECONDS) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _handle(self, command: tuple[str, Any]) -> None:
        kind, payload = command
        try:
            if kind == "submit":
                request, sink = payload
                self._admit(request, sink)
            elif kind == "cancel":
                self._cancel(*payload)
            elif kind == "load":
                self._load(payload)
        except Exception:  # the engine thread must survive any command
            logger.exception("engine command %s failed", kind)

    def _load(self, spec: ModelSpec) -> LoadedModel:
        loaded = self._models.get(spec["key"])
        if loaded is not None:
            return loaded
        import mlx_lm
        from mlx_lm.generate import BatchGenerator, StopSequences

        started = time.perf_counter()
        model, tokenizer = mlx_lm.load(spec["path"])[:2]  # the 3-tuple form only comes with return_config
        kernel = prepare_model(model, path=spec["path"])
        batch = BatchGenerator(
            model,
            completion_batch_size=self.config.max_batch,
            prefill_batch_size=self.config.prefill_batch,
            prefill_step_size=self.config.prefill_step,
        )
        loaded = LoadedModel(
            spec=spec,
            model=model,
            tokenizer=tokenizer,
            context_length=_context_length(spec["path"], spec.get("context_length")),
            batch=batch,
            stop_sequences=StopSequences([(token,) for token in sorted(tokenizer.eos_token_ids)]),
            kernel=kernel,
        )
        from mlx.utils import tree_flatten

        weights = cast(list[tuple[str, Any]], tree_flatten(model.parameters()))
        loaded.weights_bytes = sum(array.nbytes for _, array in weights)
        self._models[spec["key"]] = loaded
        logger.info("loaded model %s in %.2fs", spec["path"], time.perf_counter() - started)
        self._publish_stats(loaded)
        return loaded

    def _tokenize(self, loaded: LoadedModel, request: GenerationRequest) -> list[int]:
        tokenizer = loaded.tokenizer
        if request.prompt_tokens is not None:
            return list(request.prompt_tokens)
        if request.messages is not None:
            if tokenizer.chat_template is None:
                raise EngineError(
                    "This model has no chat template; use /v1/completions.", status=400, code="invalid_request_error"
                )
            tokens = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
            return list(tokens)
        return list(tokenizer.encode(request.prompt or ""))

    def _admit(self, request: GenerationRequest, sink: EventSink) -> None:
        param = "messages" if request.messages is not None else "prompt"
        try:
            try:
                loaded = self._load(request.model)
            except Exception as exc:
                logger.exception("loading %s failed", request.model["path"])
                raise EngineError(
                    f"The model could not be loaded: {type(exc).__name__}.", status=503, code="model_load_failed"
                ) from exc
            prompt = self._tokenize(loaded, request)
            if not prompt:
                raise EngineError("The prompt is empty.", status=400, code="invalid_request_error", param=param)
            vocab_size = loaded.model.args.vocab_size if hasattr(loaded.model, "args") else None
            if vocab_size and any(not 0 <= token < vocab_size for token in prompt):
                raise EngineError(
                    "The prompt holds token ids outside the vocabulary.",
                    status=400,
                    code="invalid_request_error",
                    param=param,
                )
            if vocab_size and any(not 0 <= token < vocab_size for token in request.sampling.logit_bias):
                raise EngineError(
                    f"logit_bias names token ids outside this model's vocabulary (0 to {vocab_size - 1}).",
                    status=400,
                    code="invalid_request_error",
                    param="logit_bias",
                )
            budget = loaded.context_length - len(prompt)
            if budget <= 0:
                raise EngineError(
                    f"This model's maximum context length is {loaded.context_length} tokens, but the "
                    f"prompt has {len(prompt)} tokens.",
                    status=400,
                    code="context_length_exceeded",
                    param=param,
                )
            max_tokens = request.max_tokens if request.max_tokens is not None else budget
            if max_tokens > budget:
                raise EngineError(
                    f"This model's maximum context length is {loaded.context_length} tokens. However, you "
                    f"requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, {max_tokens} "
                    "for the completion).",
                    status=400,
                    code="context_length_exceeded",
                    param="max_tokens",
                )
            cache, rest = self._prefix_cache.fetch_nearest_cache(loaded.spec["key"], prompt)
            if cache is not None and not rest:
                cache, rest = self._step_back(cache, prompt)
            cached = len(prompt) - len(rest)
            (uid,) = loaded.batch.insert(
                [rest],
                max_tokens=[max_tokens],
                caches=[cache],
                all_tokens=[prompt[:cached]],
                samplers=[make_request_sampler(request.sampling)],
                logits_processors=[make_request_processors(request.sampling)],
                stop_sequences=[loaded.stop_sequences],
            )
        except EngineError as exc:
            self._release(request.model["key"])
            sink(exc.as_event())
            return
        except Exception as exc:
            logger.exception("admitting request %s failed", request.request_id)
            self._release(request.model["key"])
            sink(
                {
                    "type": "error",
                    "status": 500,
                    "code": "engine_error",
                    "param": None,
                    "message": f"The engine could not start this request: {type(exc).__name__}.",
                }
            )
            return
        active = ActiveRequest(
            request=request,
            sink=sink,
            uid=uid,
            detokenizer=_keeping_leading_space(loaded.tokenizer.detokenizer),
            stops=StopStringMatcher(request.stop),
            prompt_tokens=len(prompt),
            cached_tokens=cached,
        )
        loaded.active[uid] = active
        loaded.uid_by_request[request.request_id] = uid
        loaded.last_used = time.time()
        sink({"type": "accepted", "prompt_tokens": len(prompt), "cached_tokens": cached})
        self._publish_stats(loaded)

    def _step_back(self, cache: list[Any], prompt: list[int]) -> tuple[list[Any] | None, list[int]]:
        """An exact cache hit still needs one token to compute logits from."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if can_trim_prompt_cache(cache):
            trim_prompt_cache(cache, 1)
            return cache, prompt[-1:]
        return None, prompt

    def _step(self, loaded: LoadedModel) -> None:
        try:
            _, responses = loaded.batch.next()
        except Exception as exc:
            logger.exception(
                "decode step failed for %s; failing its %d requests", loaded.spec["key"], len(loaded.active)
            )
            self._reset_batch(loaded, f"The engine failed while generating: {type(exc).__name__}.")
            return
        self.steps += 1
        finished: list[int] = []
        for response in responses:
            active = loaded.active.get(response.uid)
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
                self._finish(loaded, active, "stop", safe_text)
            elif response.finish_reason is not None:
                self._finish(loaded, active, response.finish_reason, safe_text + active.stops.flush())
                if response.prompt_cache is not None:
                    self._prefix_cache.insert_cache(
                        loaded.spec["key"], list(response.all_tokens), response.prompt_cache
                    )
            elif safe_text:
                active.sink({"type": "delta", "text": safe_text, "tokens": active.completion_tokens})
        if finished:
            loaded.batch.remove(finished)
        self._publish_stats(loaded)

    def _finish(self, loaded: LoadedModel, active: ActiveRequest, reason: str, text: str) -> None:
        loaded.active.pop(active.uid, None)
        loaded.uid_by_request.pop(active.request.request_id, None)
        self._release(loaded.spec["key"])
        loaded.last_used = time.time()
        event: EngineEvent = {
            "type": "finish",
            "text": text,
            "finish_reason": reason,  # type: ignore[typeddict-item]
            "prompt_tokens": active.prompt_tokens,
            "completion_tokens": active.completion_tokens,
            "cached_tokens": active.cached_tokens,
        }
        active.sink(event)

    def _cancel(self, request_id: str, model_key: str) -> None:
        loaded = self._models.get(model_key)
        if loaded is None:
            return
        uid = loaded.uid_by_request.get(request_id)
        if uid is None:
            return
        loaded.batch.remove([uid])
        active = loaded.active.get(uid)
        if active is not None:
            self._finish(loaded, active, "cancelled", "")
        self._publish_stats(loaded)

    def _reset_batch(self, loaded: LoadedModel, message: str) -> None:
        from mlx_lm.generate import BatchGenerator

        for active in list(loaded.active.values()):
            loaded.active.pop(active.uid, None)
            loaded.uid_by_request.pop(active.request.request_id, None)
            self._release(loaded.spec["key"])
            active.sink({"type": "error", "status": 500, "code": "engine_error", "param": None, "message": message})
        loaded.batch = BatchGenerator(
            loaded.model,
            completion_batch_size=self.config.max_batch,
            prefill_batch_size=self.config.prefill_batch,
            prefill_step_size=self.config.prefill_step,
        )
        self._publish_stats(loaded)

    def _release(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    def _publish_stats(self, loaded: LoadedModel) -> None:
        decoding = len(loaded.batch._generation_batch)
        prefix_cache_bytes = self._prefix_cache.nbytes if self._prefix_cache is not None else 0
        # Most decode steps change none of these: skip the dict and the lock the web threads read under.
        state = (len(loaded.active), decoding, prefix_cache_bytes, loaded.last_used)
        if state == loaded.published:
            return
        loaded.published = state
        snapshot = {
            "state": "loaded",
            "path": loaded.spec["path"],
            "active_requests": len(loaded.active),
            "decoding": decoding,
            "weights_bytes": loaded.weights_bytes,
            "waiting": len(loaded.active) - decoding,
            "context_length": loaded.context_length,
            "prefix_cache_bytes": prefix_cache_bytes,
            "last_used": loaded.last_used,
            **loaded.kernel,
        }
        with self._lock:
            self._stats[loaded.spec["key"]] = snapshot


EngineFactory = Callable[[], Engine]
