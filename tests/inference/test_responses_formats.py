"""The Responses renderer makes OpenAI's typed event sequence from the engine's events, and the whole answer is
the stream's final response object: the same events say the same thing streamed or not."""

from __future__ import annotations

import json
from typing import Any

from inference.engine.types import finish_event
from inference.errors import OpenAIError
from inference.formats.responses import ResponsesRenderer
from routing.translation.responses_api import item_response_id

ACCEPTED: Any = {"type": "accepted", "prompt_tokens": 9, "cached_tokens": 4}
ENVELOPE: dict[str, Any] = {"model": "demo", "instructions": "be brief", "tools": [], "store": False}
TEXT: list[Any] = [
    {"type": "delta", "text": "Once", "tokens": 1},
    {"type": "delta", "text": " upon", "tokens": 2},
    finish_event("stop", text=" a", prompt=9, completion=3, cached=4),
]
CALLS: list[Any] = [
    {"type": "delta", "text": "Checking.", "tokens": 2},
    {"type": "tool_call", "index": 0, "id": "call_abc", "name": "weather"},
    {"type": "tool_arguments", "index": 0, "arguments": '{"city": '},
    {"type": "tool_arguments", "index": 0, "arguments": '"Rome"}'},
    {"type": "tool_call", "index": 1, "id": "call_def", "name": "spawn_agent"},
    {"type": "tool_arguments", "index": 1, "arguments": "{}"},
    finish_event("tool_calls", prompt=9, completion=12),
]


def sse(frames: bytes) -> list[dict[str, Any]]:
    """Each frame's data, checked against its event: line."""
    events = []
    for frame in frames.decode().split("\n\n"):
        if not frame.strip() or frame.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


def stream(renderer: ResponsesRenderer, events: list[Any]) -> list[dict[str, Any]]:
    frames = renderer.stream_start(ACCEPTED)
    for event in events:
        if event["type"] == "delta":
            frames += renderer.stream_delta(event["text"])
        elif event["type"] == "reasoning":
            frames += renderer.stream_reasoning(event["text"])
        elif event["type"] == "tool_call":
            frames += renderer.stream_tool_call(event)
        elif event["type"] == "tool_arguments":
            frames += renderer.stream_tool_arguments(event)
        else:
            frames += renderer.stream_finish(event)
    return sse(frames + renderer.stream_end())


def without_clock(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "completed_at"}


def test_a_text_answer_streams_the_full_typed_sequence_numbered_from_zero():
    renderer = ResponsesRenderer(envelope=ENVELOPE)
    events = stream(renderer, TEXT)

    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert {event["response"]["id"] for event in (events[0], events[1], events[-1])} == {renderer.builder.id}
    added = events[2]["item"]
    assert added == {"id": added["id"], "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    assert events[3]["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta") == "Once upon a"
    assert events[7]["text"] == events[8]["part"]["text"] == "Once upon a"
    assert events[9]["item"]["status"] == "completed"
    assert completed["status"] == "completed" and completed["instructions"] == "be brief"
    assert completed["output"] == [events[9]["item"]]
    assert completed["usage"] == {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12,
    }


def test_the_whole_answer_is_the_streamed_final_response():
    for events in (TEXT, CALLS):
        renderer = ResponsesRenderer(envelope=ENVELOPE, namespaces={"spawn_agent": "multi_agent_v1"})
        body = renderer.body(events)
        final = stream(renderer, events)[-1]["response"]
        assert without_clock(body) == without_clock(final)
        assert body["id"] == final["id"] and body["object"] == "response"


def test_calls_become_function_call_items_with_the_engines_call_id_and_their_namespace():
    renderer = ResponsesRenderer(envelope=ENVELOPE, namespaces={"spawn_agent": "multi_agent_v1"})
    events = stream(renderer, CALLS)

    kinds = [event["type"] for event in events]
    assert kinds[2:] == [
        "response.output_item.added",  # the message
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",  # weather
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",  # spawn_agent
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    message, weather, spawn = events[-1]["response"]["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == "Checking."
    assert weather == {
        "id": weather["id"],
        "type": "function_call",
        "status": "completed",
        "arguments": '{"city": "Rome"}',
        "call_id": "call_abc",
        "name": "weather",
    }
    assert weather["id"].startswith("fc_")
    assert spawn["namespace"] == "multi_agent_v1" and spawn["call_id"] == "call_def"
    done = [event for event in events if event["type"] == "response.function_call_arguments.done"]
    assert [(event["name"], event["arguments"]) for event in done] == [
        ("weather", '{"city": "Rome"}'),
        ("spawn_agent", "{}"),
    ]
    assert [event["output_index"] for event in done] == [1, 2]
    # Every item id names its response, so an item_reference finds the stored row with one lookup.
    assert {item_response_id(item["id"]) for item in (message, weather, spawn)} == {renderer.builder.id}


def test_an_answer_cut_at_max_output_tokens_ends_incomplete():
    events = stream(ResponsesRenderer(envelope=ENVELOPE), [*TEXT[:-1], finish_event("length", prompt=9, completion=2)])

    assert events[-1]["type"] == "response.incomplete"
    response = events[-1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert events[-2]["type"] == "response.output_item.done" and events[-2]["item"]["status"] == "incomplete"


def test_an_empty_answer_still_has_its_message():
    body = ResponsesRenderer(envelope=ENVELOPE).body([finish_event("stop", prompt=3, completion=0)])

    assert body["status"] == "completed"
    assert [(item["type"], item["content"][0]["text"]) for item in body["output"]] == [("message", "")]


def test_an_error_mid_stream_sends_error_then_response_failed():
    renderer = ResponsesRenderer(envelope=ENVELOPE)
    frames = renderer.stream_start(ACCEPTED) + renderer.stream_delta("Once")
    frames += renderer.stream_error(OpenAIError("The model was unloaded.", status=503, code="model_unloaded"))
    events = sse(frames)

    assert [event["type"] for event in events[-2:]] == ["error", "response.failed"]
    error, failed = events[-2], events[-1]["response"]
    assert (error["code"], error["message"], error["param"]) == ("model_unloaded", "The model was unloaded.", None)
    assert failed["status"] == "failed" and failed["id"] == renderer.builder.id
    assert failed["error"] == {"code": "server_error", "message": "The model was unloaded."}  # the SDK's closed list
    assert failed["output"][0]["status"] == "incomplete"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))


def test_heartbeats_are_sse_comments():
    assert ResponsesRenderer(envelope=ENVELOPE).heartbeat() == b": keepalive\n\n"


def test_every_event_and_response_validates_against_the_official_sdks_types():
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    events_type: Any = TypeAdapter(ResponseStreamEvent)
    renderer = ResponsesRenderer(envelope={**ENVELOPE, "parallel_tool_calls": True, "temperature": 1.0,
                                           "top_p": 1.0, "tool_choice": "auto", "metadata": {}})  # fmt: skip
    failing = ResponsesRenderer(envelope=renderer.envelope)
    failed = sse(failing.stream_start(ACCEPTED) + failing.stream_error(OpenAIError("gone", status=503, code="x")))
    for event in [*stream(renderer, CALLS), *failed]:
        parsed = events_type.validate_python(event)
        assert parsed.type == event["type"]
        if "response" in event:
            Response.model_validate(event["response"])
    Response.model_validate(ResponsesRenderer(envelope=renderer.envelope).body(TEXT))


THOUGHT: list[Any] = [
    {"type": "reasoning", "text": "nine is", "tokens": 2},
    {"type": "reasoning", "text": " odd", "tokens": 3},
    {"type": "delta", "text": "Yes.", "tokens": 6},
    {**finish_event("stop", prompt=9, completion=7), "reasoning_tokens": 4},
]


def test_reasoning_is_a_reasoning_item_before_the_message_with_its_tokens_counted():
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    renderer = ResponsesRenderer(envelope={**ENVELOPE, "parallel_tool_calls": True, "temperature": 1.0,
                                           "top_p": 1.0, "tool_choice": "auto", "metadata": {}})  # fmt: skip
    events = stream(renderer, THOUGHT)

    kinds = [event["type"] for event in events]
    assert kinds[2:8] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    events_type: Any = TypeAdapter(ResponseStreamEvent)
    for event in events:
        assert events_type.validate_python(event).type == event["type"]
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "nine is odd" and final.output_text == "Yes."  # type: ignore[union-attr,index]
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 4
    whole = ResponsesRenderer(envelope=renderer.envelope).body(THOUGHT)
    assert [item["type"] for item in whole["output"]] == ["reasoning", "message"]
    assert whole["output"][0]["content"] == [{"type": "reasoning_text", "text": "nine is odd"}]
