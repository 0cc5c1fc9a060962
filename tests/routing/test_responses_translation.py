"""Responses ⇄ chat completions: the request a chat upstream gets, and its answer (whole or streamed) as a
Responses object and event sequence."""

from __future__ import annotations

import json
from typing import Any

from routing.translation.requests import openai_request_to_anthropic
from routing.translation.responses_api import (
    ChatToResponsesStream,
    ResponsesBuilder,
    chat_response_to_responses,
    item_response_id,
    responses_request_to_chat,
    responses_usage_counts,
)
from routing.translation.streams import AnthropicToOpenAIStream

WEATHER = {"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": True}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "tools": [{"type": "function", "name": "spawn_agent", "description": "Spawns.", "parameters": None}],
}
HISTORY: list[dict[str, Any]] = [
    {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        ],
    },
    {"type": "reasoning", "id": "rs_1", "summary": []},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Rome"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "sunny"}]},
]


def envelope() -> dict[str, Any]:
    return {"model": "asked-for", "store": False, "tools": []}


def test_a_responses_request_becomes_a_chat_completions_body():
    body = {
        "instructions": "You help.",
        "input": HISTORY,
        "tools": [WEATHER, NAMESPACE, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_output_tokens": 64,
        "temperature": 0.2,
        "text": {"format": {"type": "json_schema", "name": "City", "schema": {"type": "object"}, "strict": True}},
        "stream": True,
    }
    chat, namespaces = responses_request_to_chat(body, model="gpt-up")

    assert chat["model"] == "gpt-up"
    assert chat["messages"] == [
        {"role": "system", "content": "You help."},
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["weather", "spawn_agent"]  # no web_search
    assert chat["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert namespaces == {"spawn_agent": "multi_agent_v1"}
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("auto", False)
    assert (chat["max_tokens"], chat["temperature"]) == (64, 0.2)
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": {"type": "object"}, "strict": True},
    }
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_tool_choices_become_chat_tool_choices():
    def translated(choice: Any, **extra: Any) -> dict[str, Any]:
        body = {"input": [{"role": "user", "content": "hi"}], "tools": [WEATHER, NAMESPACE], "tool_choice": choice}
        return responses_request_to_chat({**body, **extra}, model="m")[0]

    assert translated({"type": "function", "name": "weather"})["tool_choice"] == {
        "type": "function",
        "function": {"name": "weather"},
    }
    allowed = translated(
        {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "weather"}]}
    )
    assert allowed["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in allowed["tools"]] == ["weather"]
    assert translated("none", max_tool_calls=1)["parallel_tool_calls"] is False
    assert "tool_choice" not in translated(None)
    assert responses_request_to_chat({"input": [], "text": {"format": {"type": "json_object"}}}, model="m")[0][
        "response_format"
    ] == {"type": "json_object"}


def test_the_chat_body_goes_on_to_anthropic_as_messages():
    chat, _ = responses_request_to_chat({"instructions": "You help.", "input": HISTORY, "tools": [WEATHER]}, model="c")
    anthropic = openai_request_to_anthropic(chat, model="claude-up")

    assert anthropic["system"] == "You help.\n\nBe terse."
    roles = [message["role"] for message in anthropic["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert anthropic["messages"][1]["content"][-1] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "weather",
        "input": {"city": "Rome"},
    }
    assert anthropic["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]


def chat_completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 11, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def test_a_whole_chat_answer_becomes_a_response():
    text = chat_completion({"role": "assistant", "content": "Hello"}, "stop")
    response = chat_response_to_responses(text, ResponsesBuilder(envelope=envelope()))

    assert (response["status"], response["model"], response["object"]) == ("completed", "asked-for", "response")
    assert response["output"][0]["content"][0]["text"] == "Hello"
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 3
    assert responses_usage_counts(response["usage"]) == (11, 4, 3)

    call = {"id": "call_9", "type": "function", "function": {"name": "spawn_agent", "arguments": "{}"}}
    calls = chat_completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
    builder = ResponsesBuilder(envelope=envelope(), namespaces={"spawn_agent": "multi_agent_v1"})
    [item] = chat_response_to_responses(calls, builder)["output"]
    assert (item["type"], item["call_id"], item["namespace"], item["arguments"]) == (
        "function_call",
        "call_9",
        "multi_agent_v1",
        "{}",
    )
    cut = chat_completion({"role": "assistant", "content": "Hel"}, "length")
    incomplete = chat_response_to_responses(cut, ResponsesBuilder(envelope=envelope()))
    assert incomplete["status"] == "incomplete" and incomplete["incomplete_details"] == {"reason": "max_output_tokens"}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_a_chat_stream_becomes_the_responses_event_sequence_ending_as_the_whole_answer_would():
    arguments = json.dumps({"city": "Paris"})
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "On it."}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:5]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]}),
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}},
    ]
    translator = ChatToResponsesStream(ResponsesBuilder(envelope=envelope()))
    events = translator.start() + [event for item in chunks for event in translator.feed(item)] + translator.finish()

    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    kinds = [event["type"] for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.function_call_arguments.delta") == 2 and kinds[-1] == "response.completed"
    final = events[-1]["response"]
    whole = chat_response_to_responses(
        chat_completion(
            {
                "content": "On it.",
                "tool_calls": [{"id": "call_1", "function": {"name": "weather", "arguments": arguments}}],
            },
            "tool_calls",
        ),
        ResponsesBuilder(envelope=envelope(), response_id=final["id"], created_at=final["created_at"]),
    )
    assert final["output"] == whole["output"]
    assert final["usage"]["input_tokens"] == 11 and final["usage"]["output_tokens"] == 4


def test_an_anthropic_stream_reaches_responses_through_chat_chunks():
    events = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    to_chat = AnthropicToOpenAIStream(model="m", created=0, include_usage=True)
    translator = ChatToResponsesStream(ResponsesBuilder(envelope=envelope()))
    out = [event for name, data in events for piece in to_chat.feed(name, data) for event in translator.feed(piece)]
    final = (out + translator.finish())[-1]["response"]

    [item] = final["output"]
    assert (item["call_id"], item["name"], item["arguments"]) == ("toolu_1", "weather", '{"city": "Oslo"}')
    assert responses_usage_counts(final["usage"]) == (9, 5, 0)


def test_only_mlx_hubs_own_item_ids_name_a_response():
    builder = ResponsesBuilder(envelope=envelope())
    builder.text("hi")
    builder.call(0, "call_1", "weather")

    assert {item_response_id(item["id"]) for item in builder.items} == {builder.id}
    assert item_response_id("msg_67ccd3a9da748190baa7f1570fe91ac604becb25c6c51ebf") is None  # OpenAI's
    assert item_response_id("fc_1") is None
