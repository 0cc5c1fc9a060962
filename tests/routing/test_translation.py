"""OpenAI chat ⇄ Anthropic messages, each direction, streaming and not."""

from __future__ import annotations

import json

from routing.translation.errors import anthropic_error_body
from routing.translation.requests import anthropic_request_to_openai, openai_request_to_anthropic
from routing.translation.responses import anthropic_response_to_openai, openai_response_to_anthropic
from routing.translation.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

PNG = "iVBORw0KGgo="


def test_an_openai_request_becomes_an_anthropic_one_with_system_images_stops_and_tools() -> None:
    body = {
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"x": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        ],
        "max_tokens": 50,
        "temperature": 1.7,
        "stop": "END",
        "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "stream": True,
    }
    out = openai_request_to_anthropic(body, model="claude-x")
    assert out["model"] == "claude-x"
    assert out["system"] == "Be brief.\n\nAnswer in French."
    assert out["max_tokens"] == 50
    assert out["temperature"] == 1.0  # clamped into Anthropic's 0-1
    assert out["stop_sequences"] == ["END"]
    assert out["stream"] is True
    user, assistant, tool_result = out["messages"]
    assert user["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert user["content"][2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert assistant["content"] == [{"type": "tool_use", "id": "call_1", "name": "look", "input": {"x": 1}}]
    assert tool_result == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"}],
    }
    assert out["tools"] == [{"name": "look", "description": "", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "any"}


def test_an_openai_request_without_max_tokens_gets_anthropics_required_default() -> None:
    out = openai_request_to_anthropic({"messages": [{"role": "user", "content": "hi"}]}, model="m")
    assert out["max_tokens"] > 0
    assert "system" not in out


def test_an_anthropic_request_becomes_an_openai_one_with_tool_results_as_tool_messages() -> None:
    body = {
        "model": "local",
        "max_tokens": 20,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a cat"}]},
        ],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_k": 5,
        "stream": True,
        "tools": [{"name": "look", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "look"},
        "metadata": {"user_id": "u1"},
    }
    out = anthropic_request_to_openai(body, model="gpt")
    system, user, assistant, tool = out["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert assistant["content"] is None
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
    assert tool == {"role": "tool", "tool_call_id": "t1", "content": "a cat"}
    assert out["stop"] == ["END"]
    assert out["max_tokens"] == 20
    assert out["temperature"] == 0.5
    assert out["top_k"] == 5
    assert out["stream_options"] == {"include_usage": True}
    assert out["user"] == "u1"
    assert out["tool_choice"] == {"type": "function", "function": {"name": "look"}}


def test_responses_translate_both_ways_with_usage_and_stop_reasons() -> None:
    anthropic = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 2},
    }
    openai = anthropic_response_to_openai(anthropic, model="m", created=1)
    choice = openai["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Hi"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert openai["usage"]["prompt_tokens"] == 9
    assert openai["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert openai["usage"]["completion_tokens"] == 3

    back = openai_response_to_anthropic(openai, model="m")
    assert back["stop_reason"] == "tool_use"
    assert back["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
    ]
    assert back["usage"] == {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 2}
    length = openai_response_to_anthropic(
        {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}, model="m"
    )
    assert length["stop_reason"] == "max_tokens"


def test_an_openai_stream_becomes_anthropic_events_in_order() -> None:
    translator = OpenAIToAnthropicStream(model="m")
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}}
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}},
    ]
    events = [event for chunk in chunks for event in translator.feed(chunk)] + translator.finish()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1]["content_block"]["type"] == "tool_use"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 6
    assert translator.finish() == []


def test_an_anthropic_stream_becomes_openai_chunks_with_usage_when_asked() -> None:
    translator = AnthropicToOpenAIStream(model="m", created=1, include_usage=True)
    events = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 9}}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = [chunk for name, data in events for chunk in translator.feed(name, data)]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"] == "t"
    assert chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert chunks[4]["choices"][0]["finish_reason"] == "length"
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["prompt_tokens"] == 9
    assert chunks[5]["usage"]["completion_tokens"] == 3


def test_errors_take_anthropics_shape_with_the_type_for_the_status() -> None:
    assert anthropic_error_body(status=429, message="slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert anthropic_error_body(status=503, message="x")["error"]["type"] == "overloaded_error"


def test_tool_choice_parallelism_and_structured_output_cross_both_ways():
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    openai_body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema}},
    }

    anthropic = openai_request_to_anthropic(openai_body, model="claude")

    assert anthropic["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert anthropic["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert anthropic["tools"][0]["name"] == "lookup"

    back = anthropic_request_to_openai({**anthropic, "max_tokens": 16}, model="gpt")

    assert back["tool_choice"] == "required"
    assert back["parallel_tool_calls"] is False
    assert back["response_format"]["type"] == "json_schema"
    assert back["response_format"]["json_schema"]["schema"] == schema
    assert back["tools"][0]["function"]["name"] == "lookup"


def test_a_json_object_format_becomes_any_object_for_anthropic():
    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}

    assert openai_request_to_anthropic(body, model="claude")["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }


def test_anthropic_system_blocks_reach_an_openai_upstream_joined_with_a_newline() -> None:
    body = {
        "model": "claude",
        "max_tokens": 8,
        "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
        "messages": [{"role": "user", "content": "hi"}],
    }

    assert anthropic_request_to_openai(body, model="gpt")["messages"][0] == {
        "role": "system",
        "content": "be brief\nbe kind",
    }


def test_an_anthropic_error_body_names_its_request() -> None:
    body = anthropic_error_body(status=404, message="no such model", request_id="req_1")

    assert body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such model"},
        "request_id": "req_1",
    }
