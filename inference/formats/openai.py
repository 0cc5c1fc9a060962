"""OpenAI's shapes: chat completions, text completions and embeddings, chunks and bodies."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import numpy as np

from inference.constants import OWNED_BY, SSE_DONE, SSE_HEARTBEAT
from inference.engine.types import EmbeddingsEvent, EngineEvent, FinishEvent, ToolArgumentsEvent, ToolCallEvent
from inference.errors import OpenAIError, error_body
from inference.formats.base import (
    Renderer,
    compact_json,
    reasoning_text,
    reasoning_tokens,
    text_and_finish,
    tool_calls,
)


def sse_data(payload: dict[str, Any]) -> bytes:
    """One server-sent event in OpenAI's framing (compact JSON)."""
    return b"data: " + compact_json(payload) + b"\n\n"


def sse_error(error: OpenAIError) -> bytes:
    return sse_data(error_body(message=str(error), status=error.status, code=error.code, param=error.param))


def new_completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def finish_reason(finish: FinishEvent) -> str:
    reason = finish["finish_reason"]
    return reason if reason in ("length", "tool_calls") else "stop"


def _usage(finish: FinishEvent) -> dict[str, Any]:
    return usage_body(
        prompt_tokens=finish["prompt_tokens"],
        completion_tokens=finish["completion_tokens"],
        cached_tokens=finish["cached_tokens"],
        reasoning=reasoning_tokens(finish),
    )


class CompletionRenderer(Renderer):
    """/v1/completions: ``text_completion`` objects, streamed or whole."""

    object_name = "text_completion"
    chunk_object = "text_completion"
    id_prefix = "cmpl"

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_completion_id(self.id_prefix)
        self.created = int(time.time())

    def envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": OWNED_BY,
            "choices": choices,
        }

    def choice(self, text: str, reason: str) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}

    def delta(self, text: str | None, reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}

    def chunk(self, text: str | None, reason: str | None) -> bytes:
        chunk = self.envelope(self.chunk_object, [self.delta(text, reason)])
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_delta(self, text: str) -> bytes:
        return self.chunk(text, None)

    def stream_finish(self, finish: FinishEvent) -> bytes:
        frames = self.chunk(finish["text"], None) if finish["text"] else b""
        frames += self.chunk(None, finish_reason(finish))
        if self.include_usage:
            usage = self.envelope(self.chunk_object, [])
            usage["usage"] = _usage(finish)
            frames += sse_data(usage)
        return frames

    def stream_error(self, error: OpenAIError) -> bytes:
        return sse_error(error)

    def heartbeat(self) -> bytes:
        return SSE_HEARTBEAT

    def stream_end(self) -> bytes:
        return SSE_DONE

    def body(self, events: list[EngineEvent]) -> dict[str, Any]:
        text, finish = text_and_finish(events)
        body = self.envelope(self.object_name, [self.choice(text, finish_reason(finish))])
        body["usage"] = _usage(finish)
        return body


class ChatRenderer(CompletionRenderer):
    """/v1/chat/completions: ``chat.completion`` bodies and ``chat.completion.chunk`` streams."""

    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def choice(self, text: str, reason: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}

    def delta(self, text: str | None, reason: str | None) -> dict[str, Any]:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _tool_chunk(self, call: dict[str, Any]) -> bytes:
        chunk = self.envelope(self.chunk_object, [self.delta(None, None)])
        chunk["choices"][0]["delta"] = {"tool_calls": [call]}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_reasoning(self, text: str) -> bytes:
        # reasoning_content as DeepSeek and vLLM name it; reasoning as OpenRouter and mlx-lm do.
        chunk = self.envelope(self.chunk_object, [self.delta(None, None)])
        chunk["choices"][0]["delta"] = {"reasoning_content": text, "reasoning": text}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_tool_call(self, event: ToolCallEvent) -> bytes:
        function = {"name": event["name"], "arguments": ""}
        return self._tool_chunk({"index": event["index"], "id": event["id"], "type": "function", "function": function})

    def stream_tool_arguments(self, event: ToolArgumentsEvent) -> bytes:
        return self._tool_chunk({"index": event["index"], "function": {"arguments": event["arguments"]}})

    def body(self, events: list[EngineEvent]) -> dict[str, Any]:
        body = super().body(events)
        thought = reasoning_text(events)
        if thought:
            body["choices"][0]["message"].update(reasoning_content=thought, reasoning=thought)
        calls = tool_calls(events)
        if calls:
            message = body["choices"][0]["message"]
            message["content"] = message["content"] or None
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in calls
            ]
        return body

    def stream_start(self, accepted: Any) -> bytes:
        chunk = self.envelope(self.chunk_object, [self.delta(None, None)])
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)


class EmbeddingsRenderer:
    """/v1/embeddings: vectors truncated to ``dimensions`` (re-normalised), as floats or base64."""

    def __init__(self, *, model: str, encoding_format: str, dimensions: int | None) -> None:
        self.model = model
        self.encoding_format = encoding_format
        self.dimensions = dimensions

    def vectors(self, event: EmbeddingsEvent) -> np.ndarray:
        vectors = np.frombuffer(event["vectors"], dtype="<f4").reshape(event["count"], event["dimensions"])
        if self.dimensions is None or self.dimensions == event["dimensions"]:
            return vectors
        if self.dimensions > event["dimensions"]:
            raise OpenAIError(
                f"This model's embeddings have {event['dimensions']} dimensions; dimensions must be at most that.",
                param="dimensions",
            )
        shortened = vectors[:, : self.dimensions]
        norms = np.linalg.norm(shortened, axis=1, keepdims=True)
        return np.asarray(shortened / np.where(norms == 0, 1, norms), dtype=np.float32)

    def encode(self, vector: np.ndarray) -> Any:
        if self.encoding_format == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return [float(value) for value in vector]

    def body(self, event: EmbeddingsEvent) -> dict[str, Any]:
        data = [
            {"object": "embedding", "index": index, "embedding": self.encode(vector)}
            for index, vector in enumerate(self.vectors(event))
        ]
        usage = {"prompt_tokens": event["prompt_tokens"], "total_tokens": event["prompt_tokens"]}
        return {"object": "list", "data": data, "model": self.model, "usage": usage}
