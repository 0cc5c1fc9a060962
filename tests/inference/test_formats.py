"""Each protocol renders the engine's events directly: the same events make the same answer streamed or whole,
and an error keeps its real status and type in every protocol."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.engine.types import finish_event
from inference.errors import OpenAIError
from inference.formats.anthropic import MessagesRenderer
from inference.formats.openai import ChatRenderer, CompletionRenderer

EVENTS: list[Any] = [
    {"type": "delta", "text": "Once", "tokens": 1},
    {"type": "delta", "text": " upon", "tokens": 2},
    finish_event("length", text=" a", prompt=7, completion=3, cached=2),
]
ACCEPTED: Any = {"type": "accepted", "prompt_tokens": 7, "cached_tokens": 2}


def sse(frames: bytes) -> list[tuple[str, Any]]:
    """(event name, data) of each frame; OpenAI's frames have no name."""
    parsed = []
    for frame in frames.decode().split("\n\n"):
        if not frame.strip() or frame.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = lines["data"]
        parsed.append((lines.get("event", ""), None if data == "[DONE]" else json.loads(data)))
    return parsed


def stream(renderer: Any) -> bytes:
    frames = renderer.stream_start(ACCEPTED)
    for event in EVENTS[:-1]:
        frames += renderer.stream_delta(event["text"])
    return frames + renderer.stream_finish(EVENTS[-1]) + renderer.stream_end()


def test_a_streamed_chat_completion_says_what_the_whole_one_says():
    renderer = ChatRenderer(model="demo", include_usage=True)
    body = renderer.body(EVENTS)
    chunks = [data for _, data in sse(stream(renderer)) if data is not None]

    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])
    assert text == body["choices"][0]["message"]["content"] == "Once upon a"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == [body["choices"][0]["finish_reason"]] == ["length"]
    assert chunks[-1]["usage"] == body["usage"]
    assert body["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert {chunk["id"] for chunk in chunks} == {body["id"]}
    assert sse(stream(ChatRenderer(model="demo", include_usage=False)))[-1] == ("", None)  # data: [DONE]


def test_a_streamed_text_completion_says_what_the_whole_one_says():
    renderer = CompletionRenderer(model="demo", include_usage=False)
    body = renderer.body(EVENTS)
    chunks = [data for _, data in sse(stream(renderer)) if data is not None]

    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == body["choices"][0]["text"] == "Once upon a"
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in chunk for chunk in chunks)


def test_an_anthropic_stream_says_what_the_whole_message_says_with_the_real_input_tokens():
    renderer = MessagesRenderer(model="demo")
    body = renderer.body(EVENTS)
    events = sse(stream(renderer))

    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["id"] == body["id"]
    assert start["usage"]["input_tokens"] == body["usage"]["input_tokens"] == 5  # 7 prompt tokens, 2 cached
    assert start["usage"]["cache_read_input_tokens"] == 2
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == body["content"][0]["text"] == "Once upon a"
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == body["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == body["usage"]["output_tokens"] == 3


@pytest.mark.parametrize(
    ("status", "anthropic_type"),
    [(400, "invalid_request_error"), (429, "rate_limit_error"), (503, "overloaded_error"), (504, "timeout_error")],
)
def test_an_error_in_a_stream_keeps_its_status_in_both_protocols(status, anthropic_type):
    error = OpenAIError("The model was unloaded.", status=status, code="model_unloaded")

    [(name, anthropic)] = sse(MessagesRenderer(model="demo").stream_error(error))
    [(_, openai)] = sse(ChatRenderer(model="demo", include_usage=False).stream_error(error))

    assert (name, anthropic["type"], anthropic["error"]["type"]) == ("error", "error", anthropic_type)
    assert anthropic["error"]["message"] == openai["error"]["message"] == "The model was unloaded."
    assert openai["error"]["code"] == "model_unloaded"


THOUGHT: list[Any] = [
    {"type": "reasoning", "text": "nine is", "tokens": 2},
    {"type": "reasoning", "text": " odd", "tokens": 3},
    {"type": "delta", "text": "Yes.", "tokens": 6},
    {**finish_event("stop", prompt=9, completion=7), "reasoning_tokens": 4},
]


def test_chat_bodies_carry_the_reasoning_apart_from_the_content_and_count_it():
    body = ChatRenderer(model="m", include_usage=False).body(THOUGHT)

    message = body["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"], message["reasoning"]) == (
        "Yes.",
        "nine is odd",
        "nine is odd",
    )
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


def test_completions_never_show_reasoning():
    renderer = CompletionRenderer(model="m", include_usage=False)

    assert renderer.stream_reasoning("nine is") == b""
    assert renderer.body(THOUGHT)["choices"][0]["text"] == "Yes."


def test_anthropic_thinking_blocks_only_when_the_request_enabled_them():
    enabled = MessagesRenderer(model="m", thinking=True).body(THOUGHT)
    disabled = MessagesRenderer(model="m").body(THOUGHT)

    assert [block["type"] for block in enabled["content"]] == ["thinking", "text"]
    assert enabled["content"][0]["thinking"] == "nine is odd" and enabled["content"][0]["signature"]
    assert disabled["content"] == [{"type": "text", "text": "Yes."}]
    assert MessagesRenderer(model="m").stream_reasoning("nine") == b""


def test_anthropic_names_the_stop_sequence_that_ended_the_answer():
    finish = {**finish_event("stop", text="", prompt=3, completion=2), "stop_sequence": "END"}
    renderer = MessagesRenderer(model="m")

    body = renderer.body([{"type": "delta", "text": "ok", "tokens": 1}, finish])
    frames = renderer.stream_finish(finish).decode()

    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    assert '"stop_reason":"stop_sequence","stop_sequence":"END"' in frames
