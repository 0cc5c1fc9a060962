"""What clients send is accepted, what would change the output and cannot be honoured is refused naming the
field, and each protocol's conversation and tools reach the engine in one shape."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from inference.conversations import anthropic_conversation, chat_conversation
from inference.errors import OpenAIError
from inference.schemas.anthropic import AnthropicMessagesRequest
from inference.schemas.openai import ChatCompletionRequest
from inference.tooling import anthropic_tool_plan, chat_tool_plan

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Rome", "Oslo"]}}},
        "strict": True,
    },
}


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], **fields}
    payload = ChatCompletionRequest.model_validate(body)
    payload.refuse_fields()
    return payload


def refused(call: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        call()
    assert caught.value.status == 400
    return caught.value


# ---- accepted and ignored -------------------------------------------------------------------------------------


def test_the_sdks_own_assistant_message_is_accepted_when_sent_back():
    echoed = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "audio": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    }
    payload = chat(
        messages=[
            {"role": "user", "content": "weather?"},
            echoed,
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
    )

    messages = chat_conversation(payload, vision=False).messages
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny", "name": "get_weather"}


def test_harmless_fields_and_cache_hints_are_accepted_everywhere_they_are_sent():
    payload = chat(
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "developer", "content": "and kind"},
            {"role": "user", "name": "ana", "content": [{"type": "text", "text": "hi", "cache_control": {}}]},
        ],
        metadata={"team": "x"},
        store=True,
        user="ana",
        prompt_cache_key="k",
        safety_identifier="s",
        service_tier="auto",
        reasoning_effort="low",
        stream_options={"include_usage": True, "include_obfuscation": False},
    )

    messages = chat_conversation(payload, vision=False).messages
    assert messages == [{"role": "system", "content": "be brief\n\nand kind"}, {"role": "user", "content": "hi"}]


def test_an_unknown_field_is_accepted_and_its_name_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="inference.schemas.common")
    for _ in range(3):
        chat(some_new_field_2027={"x": 1})

    logged = [record.message for record in caplog.records if "some_new_field_2027" in record.message]
    assert len(logged) == 1


def test_the_anthropic_block_fields_the_conversation_reads_are_never_logged_as_unknown(caplog, monkeypatch):
    from inference.schemas import common

    monkeypatch.setattr(common, "_logged", set())  # whatever earlier tests logged
    caplog.set_level(logging.INFO, logger="inference.schemas.common")
    content = [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}},
    ]
    results = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x", "new_block_field_2027": 1}]
    body = {
        "model": "demo",
        "max_tokens": 8,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "go"}]},
            {"role": "assistant", "content": content},
            {"role": "user", "content": results},
        ],
    }

    AnthropicMessagesRequest.model_validate(body).refuse_fields()

    unknown = [record.message for record in caplog.records if "unknown field" in record.message]
    assert unknown == ["accepted an unknown field Block.new_block_field_2027 (ignored); logged once per field name"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"moderation": {"model": "omni"}}, "moderation"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA"}}]}]},
            "messages[0].content[0].input_audio",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
            "messages[0].content[0].file",
        ),
        ({"messages": [{"role": "assistant", "content": "x", "audio": {"id": "audio_1"}}]}, "messages[0].audio"),
    ],
    ids=["audio", "prediction", "web_search", "moderation", "input_audio", "file", "assistant-audio"],
)
def test_a_field_that_would_change_the_output_and_cannot_be_honoured_is_a_400_naming_it(fields, param):
    assert refused(lambda: chat(**fields)).param == param


def test_audio_in_modalities_is_refused_but_text_is_fine():
    from catalog.models import ModelKind  # noqa: F401  (the request builder needs the app registry)
    from inference.engine_requests import refuse_unsupported

    refuse_unsupported(chat(modalities=["text"]))
    assert refused(lambda: refuse_unsupported(chat(modalities=["text", "audio"]))).param == "modalities"


# ---- tools and tool choice --------------------------------------------------------------------------------------


def test_auto_offers_the_tools_and_forces_nothing_and_none_offers_nothing():
    auto = chat_tool_plan(chat(tools=[WEATHER]))
    none = chat_tool_plan(chat(tools=[WEATHER], tool_choice="none"))

    assert auto.tools is not None and auto.tools[0]["function"]["name"] == "get_weather"
    assert "strict" not in auto.tools[0]["function"]  # enforced calls are valid whatever it says
    assert auto.grammar is None
    assert (none.tools, none.grammar) == (None, None)
    assert auto.max_calls is None
    assert chat_tool_plan(chat(tools=[WEATHER], parallel_tool_calls=False)).max_calls == 1


def test_required_and_named_choices_are_enforced_calls_and_a_named_one_is_one_call():
    required = chat_tool_plan(chat(tools=[WEATHER], tool_choice="required"))
    named = chat_tool_plan(chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    both = chat_tool_plan(
        chat(
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=True,
        )
    )

    assert required.grammar is not None and required.grammar.kind == "tool_calls"
    assert (required.grammar.choice, required.grammar.parallel) == (None, True)
    assert named.grammar is not None and (named.grammar.choice, named.grammar.parallel) == ("get_weather", False)
    assert both.grammar is not None and both.grammar.parallel is True


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ],
    ids=["bad-name", "custom", "duplicate", "required-without-tools", "unknown-named", "unknown-choice"],
)
def test_tools_and_choices_that_cannot_be_served_are_a_400_naming_them(fields, param):
    assert refused(lambda: chat_tool_plan(chat(**fields))).param == param


def test_anthropic_tool_choice_none_offers_nothing_and_auto_offers_the_tools():
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}]
    body = {"model": "demo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tools": tools}

    auto = anthropic_tool_plan(AnthropicMessagesRequest.model_validate(body))
    none = anthropic_tool_plan(AnthropicMessagesRequest.model_validate({**body, "tool_choice": {"type": "none"}}))

    assert auto.tools == [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert none.tools is None


def test_anthropics_own_tools_are_refused_by_type():
    body = {
        "model": "demo",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    }
    assert refused(lambda: anthropic_tool_plan(AnthropicMessagesRequest.model_validate(body))).param == "tools[0]"


# ---- Anthropic conversations ---------------------------------------------------------------------------------------


def test_claude_codes_mid_conversation_system_turn_joins_the_system_prompt_and_tool_turns_cross():
    body = {
        "model": "demo",
        "max_tokens": 8,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<reminder/>"}, {"type": "text", "text": "fix it"}]},
            {"role": "system", "content": [{"type": "text", "text": "cwd: /src", "cache_control": {}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)", "is_error": False}
                ],
            },
        ],
        "metadata": {"user_id": "u"},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": []},
        "output_config": {"effort": "high"},
    }
    payload = AnthropicMessagesRequest.model_validate(body)
    payload.refuse_fields()

    messages = anthropic_conversation(payload, vision=False).messages

    assert messages == [
        {"role": "system", "content": "You are a coding agent.\n\ncwd: /src"},
        {"role": "user", "content": "<reminder/>\nfix it"},
        {
            "role": "assistant",
            "content": "Reading.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"path": "a.py"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "print(1)", "name": "Read"},
    ]


def test_anthropic_server_tool_blocks_and_mcp_servers_are_refused():
    base = {"model": "demo", "max_tokens": 8}
    with pytest.raises(ValueError, match="Anthropic's servers"):
        AnthropicMessagesRequest.model_validate(
            {**base, "messages": [{"role": "assistant", "content": [{"type": "server_tool_use", "id": "x"}]}]}
        )
    payload = AnthropicMessagesRequest.model_validate(
        {**base, "messages": [{"role": "user", "content": "hi"}], "mcp_servers": [{"url": "https://x"}]}
    )
    assert refused(payload.refuse_fields).param == "mcp_servers"
