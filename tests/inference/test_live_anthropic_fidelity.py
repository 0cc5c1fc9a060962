"""/v1/messages as Anthropic's own API answers it, through the official client on a live server (the tiny demo
model, greedy): the stop sequence named, real input tokens from the first event, request ids, system blocks,
a final assistant message continued, count_tokens with tools, any anthropic-version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import LiveHub
from tests.inference import tool_kit

pytestmark = pytest.mark.live

tool_model_dir = tool_kit.tool_model_dir  # fixture
TOOLS_MODEL = "fidelity-tools"
GREEDY = {"temperature": 0}
USER = [{"role": "user", "content": "tell me a story"}]


@pytest.fixture(scope="module")
def claude(live_hub: LiveHub) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_hub.base_url, api_key=live_hub.api_key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tools_model(live_hub: LiveHub, tool_model_dir: Path) -> str:
    live_hub.manage("register_model", str(tool_model_dir), "--name", TOOLS_MODEL)
    return TOOLS_MODEL


def count(claude: anthropic.Anthropic, **body: Any) -> int:
    return claude.messages.count_tokens(model=body.pop("model", "demo"), **body).input_tokens


def test_a_stop_sequence_is_named_streamed_and_not(claude: anthropic.Anthropic):
    free = claude.messages.create(model="demo", max_tokens=24, messages=USER, extra_body=GREEDY)
    text = free.content[0].text  # type: ignore[union-attr]
    stop = text[8:12]
    assert len(stop) == 4 and text.find(stop) >= 1

    whole = claude.messages.create(model="demo", max_tokens=24, messages=USER, stop_sequences=[stop], extra_body=GREEDY)
    with claude.messages.stream(
        model="demo", max_tokens=24, messages=USER, stop_sequences=["zzzz-never", stop], extra_body=GREEDY
    ) as stream:
        streamed = stream.get_final_message()

    for message in (whole, streamed):
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", stop)
        assert message.content[0].text == text[: text.find(stop)]  # type: ignore[union-attr]
    assert (free.stop_reason, free.stop_sequence) == ("max_tokens", None)


def test_message_start_carries_the_real_input_tokens(claude: anthropic.Anthropic):
    with claude.messages.stream(model="demo", max_tokens=4, messages=USER) as stream:
        events = list(stream)
        final = stream.get_final_message()

    start = next(event for event in events if event.type == "message_start")
    assert start.message.usage.input_tokens == final.usage.input_tokens > 0
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == count(claude, messages=USER)


def test_every_answer_has_a_request_id_and_errors_name_it(claude: anthropic.Anthropic, http: httpx.Client):
    message = claude.messages.create(model="demo", max_tokens=2, messages=USER)
    assert message._request_id and message._request_id.startswith("req_")

    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=2, messages=USER)
    error = missing.value
    assert error.request_id and error.body["request_id"] == error.request_id  # type: ignore[index]
    assert error.body["type"] == "error" and error.body["error"]["type"] == "not_found_error"  # type: ignore[index]

    refused = http.post("/v1/messages", json={"model": "demo", "max_tokens": 0, "messages": USER})
    assert refused.status_code == 400 and refused.json()["request_id"] == refused.headers["request-id"]


def test_system_blocks_are_joined_with_a_newline(claude: anthropic.Anthropic):
    blocks = [{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}]

    assert count(claude, system=blocks, messages=USER) == count(claude, system="be brief\nbe kind", messages=USER)


def test_a_final_assistant_message_is_continued(claude: anthropic.Anthropic, tokenizer: Any):
    messages = [*USER, {"role": "assistant", "content": "Once upon a"}]
    continued = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=True, return_dict=False)

    assert count(claude, messages=messages) == len(continued)
    answer = claude.messages.create(model="demo", max_tokens=3, messages=messages, extra_body=GREEDY)
    assert answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0) == len(continued)
    assert answer.content[0].type == "text" and answer.content[0].text


def test_count_tokens_counts_the_tools(claude: anthropic.Anthropic, tools_model: str):
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    without = count(claude, model=tools_model, messages=USER)
    with_tools = count(claude, model=tools_model, messages=USER, tools=[tool])

    assert with_tools > without
    answer = claude.messages.create(model=tools_model, max_tokens=1, messages=USER, tools=[tool])  # type: ignore[list-item]
    assert answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0) == with_tools


def test_count_tokens_refuses_an_image_for_a_text_model_in_anthropics_shape(claude: anthropic.Anthropic):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        count(claude, messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is it"}]}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize("version", ["2023-06-01", "2099-12-31", "not-a-date"])
def test_any_anthropic_version_is_accepted(claude: anthropic.Anthropic, version: str):
    client = claude.with_options(default_headers={"anthropic-version": version})

    assert client.messages.create(model="demo", max_tokens=1, messages=USER).stop_reason == "max_tokens"
