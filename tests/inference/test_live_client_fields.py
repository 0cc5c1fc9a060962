"""What the official clients send is served: the SDK's own multi-turn pattern, content parts with cache hints,
harmless fields, and Claude Code's shape of an Anthropic request (with its system turn mid-conversation)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.live


def test_the_openai_sdks_own_multi_turn_pattern_works(openai_client):
    messages: list = [{"role": "user", "content": "hello"}]
    first = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=3)
    messages.append(first.choices[0].message)  # the SDK's object, refusal and all, as the SDK's docs do it
    messages.append({"role": "user", "content": "and again"})

    second = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=3)

    assert second.choices[0].finish_reason in ("length", "stop")
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


def test_content_parts_with_cache_hints_and_harmless_fields_are_served(openai_client):
    answer = openai_client.chat.completions.create(
        model="demo",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},  # type: ignore[typeddict-unknown-key]
        ],
        max_completion_tokens=3,
        temperature=0,  # greedy: the random model never picks EOS, so all 3 tokens come
        metadata={"purpose": "test"},
        store=True,
        user="tester",
        prompt_cache_key="conversation-1",
        safety_identifier="hash-of-user",
        service_tier="auto",
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )

    chunks = list(answer)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"prediction": {"type": "content", "content": "a guess"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
    ids=["audio", "prediction", "web_search"],
)
def test_a_field_that_would_change_the_output_is_still_a_400_naming_it(openai_client, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=2, **fields
        )
    assert caught.value.param == param


def test_the_anthropic_client_with_cache_hints_metadata_and_betas_is_served(live_hub):
    claude = anthropic.Anthropic(base_url=live_hub.base_url, api_key=live_hub.api_key, max_retries=0)

    answer = claude.messages.create(
        model="demo",
        max_tokens=3,
        system=[{"type": "text", "text": "You help.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        metadata={"user_id": "someone"},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14"},
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "high"}},
    )

    assert answer.stop_reason in ("max_tokens", "end_turn")
    assert answer.usage.input_tokens > 0


def test_claude_codes_request_shape_is_served(live_hub):
    """What Claude Code sends first: ?beta=true, a system turn after the first user turn, thinking, tools."""
    body = {
        "model": "demo",
        "max_tokens": 4,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "say hi"},
                ],
            },
            {
                "role": "system",
                "content": [{"type": "text", "text": "cwd: /tmp", "cache_control": {"type": "ephemeral"}}],
            },
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command.",
                "input_schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
            },
            {
                "name": "DeferredToolPlaceholder",
                "description": "later",
                "input_schema": {"type": "object"},
                "defer_loading": True,
            },
        ],
        "metadata": {"user_id": '{"device_id": "d"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    headers = {
        "x-api-key": live_hub.api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
    }
    with httpx.stream(
        "POST", f"{live_hub.base_url}/v1/messages?beta=true", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]

    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
