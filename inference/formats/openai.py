"""OpenAI's shapes: chat completions, text completions and embeddings, chunks and bodies."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import numpy as np

from inference.constants import OWNED_BY, SSE_DONE, SSE_HEARTBEAT
from inference.engine.types import (
    ChoiceEndEvent,
    DeltaEvent,
    EmbeddingsEvent,
    EngineEvent,
    FinishEvent,
    TokenLogprob,
    ToolArgumentsEvent,
    ToolCallEvent,
)
from inference.errors import OpenAIError, error_body
from inference.formats.base import Renderer, compact_json, reasoning_text, reasoning_tokens, tool_calls


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


def choices_of(events: list[EngineEvent]) -> dict[int, tuple[list[EngineEvent], FinishEvent | ChoiceEndEvent]]:
    """Each choice's events and how it ended (a request of one choice ends with its finish)."""
    finish = events[-1]
    assert finish["type"] == "finish"
    single = "choices" not in finish
    by_choice: dict[int, list[EngineEvent]] = {}
    ends: dict[int, FinishEvent | ChoiceEndEvent] = {0: finish} if single else {}
    for event in events:
        if event["type"] == "choice_end":
            ends[event["choice"]] = event
        elif event["type"] in ("delta", "reasoning", "tool_call", "tool_arguments", "finish"):
            by_choice.setdefault(event.get("choice", 0), []).append(event)  # type: ignore[union-attr,arg-type]
    return {index: (by_choice.get(index, []), ends[index]) for index in sorted(ends)}


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """Chat's ``logprobs.content``: each token with its UTF-8 bytes and its alternatives."""

    def token(text: str, logprob: float | None) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = [
        {**token(e["text"], e["logprob"]), "top_logprobs": [token(t, v) for t, v in e["top"] or []]} for e in entries
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], offset: int) -> dict[str, Any]:
    """Text completions' ``logprobs``: parallel lists, ``text_offset`` counted in the choice's text."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["text"])
    tops: list[dict[str, float] | None] = []
    for entry in entries:
        best: dict[str, float] = {}
        for text, value in entry["top"] or []:
            best.setdefault(text, value)  # two ids with one text: the better one
        tops.append(None if entry["top"] is None else best)
    return {
        "tokens": [entry["text"] for entry in entries],
        "token_logprobs": [entry["logprob"] for entry in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def mean_logprob(entries: list[TokenLogprob]) -> float:
    values = [entry["logprob"] for entry in entries if entry["logprob"] is not None]
    return sum(values) / len(values) if values else 0.0


def best_rows(rows: list[Any], made: int, kept: int) -> list[Any]:
    """``best_of``: of each prompt's ``made`` choices, the ``kept`` with the best mean log-probability per
    token, best first (OpenAI's rule), prompt by prompt."""
    best = []
    for start in range(0, len(rows), made):
        group = sorted(rows[start : start + made], key=lambda row: mean_logprob(row[3]), reverse=True)
        best += group[:kept]
    return best


class CompletionRenderer(Renderer):
    """/v1/completions: ``text_completion`` objects, streamed or whole."""

    object_name = "text_completion"
    chunk_object = "text_completion"
    id_prefix = "cmpl"

    def __init__(self, *, model: str, include_usage: bool, logprobs: bool = False, choices: int = 1) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_completion_id(self.id_prefix)
        self.created = int(time.time())
        self.logprobs = logprobs  # whether the request asked (else every choice's logprobs is null)
        self.choices = choices
        self.offsets: dict[int, int] = {}  # characters streamed so far, per choice (for text_offset)
        self.best_of: tuple[int, int] | None = None  # (choices made per prompt, choices kept per prompt)

    def render_logprobs(self, entries: list[TokenLogprob] | None, index: int) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        entries = entries or []
        rendered = completion_logprobs(entries, self.offsets.get(index, 0))
        self.offsets[index] = self.offsets.get(index, 0) + sum(len(entry["text"]) for entry in entries)
        return rendered

    def envelope(self, object_name: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": OWNED_BY,
            "choices": choices,
        }

    def choice(
        self, text: str, reason: str, *, index: int = 0, entries: list[TokenLogprob] | None = None
    ) -> dict[str, Any]:
        logprobs = self.render_logprobs(entries, index)
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}

    def delta(
        self, text: str | None, reason: str | None, *, index: int = 0, entries: list[TokenLogprob] | None = None
    ) -> dict[str, Any]:
        logprobs = self.render_logprobs(entries, index) if entries is not None else None
        return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": reason}

    def chunk(
        self, text: str | None, reason: str | None, *, index: int = 0, entries: list[TokenLogprob] | None = None
    ) -> bytes:
        chunk = self.envelope(self.chunk_object, [self.delta(text, reason, index=index, entries=entries)])
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_delta(self, text: str) -> bytes:
        return self.chunk(text, None)

    def stream_delta_event(self, event: DeltaEvent) -> bytes:
        return self.chunk(event["text"], None, index=event.get("choice", 0), entries=event.get("logprobs"))

    def stream_choice_end(self, event: ChoiceEndEvent) -> bytes:
        index, entries = event["choice"], event.get("logprobs")
        frames = self.chunk(event["text"], None, index=index, entries=entries) if event["text"] or entries else b""
        return frames + self.chunk(None, finish_reason(event), index=index)  # type: ignore[arg-type]

    def stream_finish(self, finish: FinishEvent) -> bytes:
        frames = b""
        if "choices" not in finish:  # a request of several choices ended each with stream_choice_end
            entries = finish.get("logprobs")
            frames = self.chunk(finish["text"], None, entries=entries) if finish["text"] or entries else b""
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
        finish = events[-1]
        assert finish["type"] == "finish"
        rows = []
        for index, (own, end) in choices_of(events).items():
            pieces = [event for event in own if event["type"] in ("delta", "finish")]
            text = "".join(event["text"] for event in pieces) + (end["text"] if end["type"] == "choice_end" else "")
            sources = pieces if end["type"] == "finish" else [*pieces, end]
            entries = [entry for event in sources for entry in event.get("logprobs", [])]  # type: ignore[union-attr]
            rows.append((index, text, end, entries, own))
        if self.best_of is not None:
            rows = best_rows(rows, *self.best_of)
        choices = [
            self.with_calls(self.choice(text, finish_reason(end), index=index, entries=entries), own)  # type: ignore[arg-type]
            for index, (_, text, end, entries, own) in enumerate(rows)
        ]
        body = self.envelope(self.object_name, choices)
        body["usage"] = _usage(finish)
        return body

    def with_calls(self, choice: dict[str, Any], events: list[EngineEvent]) -> dict[str, Any]:
        return choice


class ChatRenderer(CompletionRenderer):
    """/v1/chat/completions: ``chat.completion`` bodies and ``chat.completion.chunk`` streams."""

    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def render_logprobs(self, entries: list[TokenLogprob] | None, index: int) -> dict[str, Any] | None:
        return chat_logprobs(entries or []) if self.logprobs else None

    def choice(
        self, text: str, reason: str, *, index: int = 0, entries: list[TokenLogprob] | None = None
    ) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {
            "index": index,
            "message": message,
            "logprobs": self.render_logprobs(entries, index),
            "finish_reason": reason,
        }

    def delta(
        self, text: str | None, reason: str | None, *, index: int = 0, entries: list[TokenLogprob] | None = None
    ) -> dict[str, Any]:
        delta = {} if text is None else {"content": text}
        logprobs = self.render_logprobs(entries, index) if entries is not None else None
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}

    def _tool_chunk(self, call: dict[str, Any], index: int = 0) -> bytes:
        chunk = self.envelope(self.chunk_object, [self.delta(None, None, index=index)])
        chunk["choices"][0]["delta"] = {"tool_calls": [call]}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_reasoning(self, text: str, choice: int = 0) -> bytes:
        # reasoning_content as DeepSeek and vLLM name it; reasoning as OpenRouter and mlx-lm do.
        chunk = self.envelope(self.chunk_object, [self.delta(None, None, index=choice)])
        chunk["choices"][0]["delta"] = {"reasoning_content": text, "reasoning": text}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def stream_tool_call(self, event: ToolCallEvent) -> bytes:
        function = {"name": event["name"], "arguments": ""}
        call = {"index": event["index"], "id": event["id"], "type": "function", "function": function}
        return self._tool_chunk(call, event.get("choice", 0))

    def stream_tool_arguments(self, event: ToolArgumentsEvent) -> bytes:
        call = {"index": event["index"], "function": {"arguments": event["arguments"]}}
        return self._tool_chunk(call, event.get("choice", 0))

    def with_calls(self, choice: dict[str, Any], events: list[EngineEvent]) -> dict[str, Any]:
        thought = reasoning_text(events)
        if thought:  # reasoning_content as DeepSeek and vLLM name it; reasoning as OpenRouter and mlx-lm do
            choice["message"].update(reasoning_content=thought, reasoning=thought)
        calls = tool_calls(events)
        if calls:
            message = choice["message"]
            message["content"] = message["content"] or None
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in calls
            ]
        return choice

    def stream_start(self, accepted: Any) -> bytes:
        frames = b""
        for index in range(self.choices):
            chunk = self.envelope(self.chunk_object, [self.delta(None, None, index=index)])
            chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            if self.include_usage:
                chunk["usage"] = None
            frames += sse_data(chunk)
        return frames


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
