"""POST /v1/responses on the live server's local models, with the official openai client (store off, the default).

The tiny random-weight model never emits EOS, so every free-text answer here runs to max_output_tokens and ends
``response.incomplete`` — which is correct, and which the SDK's stream helper (and the Agents SDK, and Codex)
treat as a failure: real models stop by themselves.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveHub
from tests.inference.test_live_errors import assert_openai_error
from tests.inference.test_live_vision import png_data_url
from tests.model_builders import PALIGEMMA_IMAGE_TOKENS

pytestmark = pytest.mark.live

OPENING = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]


def unique(text: str = "tell me about the river") -> str:
    """Text no earlier request has sent, so nothing of it sits in the prefix cache."""
    return f"{text} {uuid.uuid4().hex}"


def prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer.encode(rendered, add_special_tokens=False))


def sse_events(body: str) -> list[dict[str, Any]]:
    """The events of a Responses stream: each frame's ``event:`` line names its data's type; no [DONE]."""
    events = []
    for frame in body.split("\n\n"):
        if not frame.strip() or frame.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


def test_a_string_input_gets_a_response_object_with_usage(openai_client: openai.OpenAI, tokenizer: Any) -> None:
    text = unique()
    response = openai_client.responses.create(model="demo", input=text, max_output_tokens=8)

    assert response.id.startswith("resp_") and response.object == "response" and response.model == "demo"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and response.output_text == message.content[0].text != ""
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == prompt_tokens(tokenizer, [{"role": "user", "content": text}])
    assert usage.output_tokens == 8 and usage.total_tokens == usage.input_tokens + 8
    assert usage.input_tokens_details.cached_tokens < usage.input_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert response.store is False  # nothing is stored without MLXHUB_RESPONSES_STORE


def test_a_repeated_input_reports_its_cached_tokens(openai_client: openai.OpenAI) -> None:
    text = unique()
    first = openai_client.responses.create(model="demo", input=text, max_output_tokens=2, temperature=0)
    again = openai_client.responses.create(model="demo", input=text, max_output_tokens=2, temperature=0)

    assert first.usage is not None and again.usage is not None
    assert again.usage.input_tokens_details.cached_tokens >= again.usage.input_tokens - 1
    assert again.usage.input_tokens_details.cached_tokens > first.usage.input_tokens_details.cached_tokens


def test_a_stream_sends_the_full_typed_sequence_in_order(http: httpx.Client) -> None:
    body = {"model": "demo", "input": unique(), "max_output_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())

    kinds = [event["type"] for event in events]
    assert kinds[:4] == OPENING
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",  # the tiny model never stops by itself
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert {events[0]["response"]["id"], events[1]["response"]["id"]} == {final["id"]}
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert events[-4]["text"] == text == final["output"][0]["content"][0]["text"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["output_tokens"] == 4
    assert {event["item_id"] for event in events if "item_id" in event} == {final["output"][0]["id"]}


def test_the_sdk_stream_helper_accumulates_the_answer_and_refuses_an_incomplete_one(
    openai_client: openai.OpenAI,
) -> None:
    with openai_client.responses.stream(model="demo", input=unique(), max_output_tokens=5) as stream:
        events = list(stream)
        # The helper's rule, not ours: without response.completed there is no final response.
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()

    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    done = next(event for event in events if event.type == "response.output_text.done")
    assert done.text == deltas != ""
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == deltas


def test_instructions_and_developer_messages_lead_the_conversation(
    openai_client: openai.OpenAI, tokenizer: Any
) -> None:
    question = unique("what is the weather")
    response = openai_client.responses.create(
        model="demo",
        instructions="be brief",
        input=[
            {
                "type": "message",
                "id": "msg_codex_1",
                "role": "developer",
                "content": [{"type": "input_text", "text": "answer in English"}],
            },
            {
                "role": "user",
                "content": [{"type": "input_text", "text": question}, {"type": "input_text", "text": "now"}],
            },
        ],
        max_output_tokens=2,
    )

    expected = [
        {"role": "system", "content": "be brief\n\nanswer in English"},
        {"role": "user", "content": f"{question}\nnow"},
    ]
    assert response.usage is not None and response.usage.input_tokens == prompt_tokens(tokenizer, expected)
    assert response.instructions == "be brief"


def test_echoed_function_calls_and_their_outputs_are_the_history_chat_would_send(
    openai_client: openai.OpenAI,
) -> None:
    question = unique("weather in Rome?")
    response = openai_client.responses.create(
        model="demo",
        input=[
            {"role": "user", "content": question},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {
                "type": "function_call",
                "id": "fc_1",
                "status": "completed",
                "call_id": "call_7",
                "name": "weather",
                "arguments": '{"city": "Rome"}',
            },
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_7", "output": "sunny"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
            },
            {"role": "user", "content": "thanks"},
        ],
        max_output_tokens=2,
    )
    # The same turns as chat messages: however the model's template shows calls, both prompts are one.
    call = {"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}
    chat = openai_client.chat.completions.create(
        model="demo",
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
            {"role": "user", "content": "thanks"},
        ],
        max_tokens=1,
    )

    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    one_turn = openai_client.responses.create(model="demo", input=question, max_output_tokens=1)
    assert one_turn.usage is not None and response.usage.input_tokens > one_turn.usage.input_tokens + 10
    assert response.output[0].type == "message"


def test_an_image_reaches_a_vision_model(openai_client: openai.OpenAI, vision_model: str) -> None:
    picture = {"type": "input_image", "image_url": png_data_url(), "detail": "auto"}
    with_image = openai_client.responses.create(
        model=vision_model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "describe the picture"}, picture]}],
        max_output_tokens=3,
    )
    text_only = openai_client.responses.create(model=vision_model, input="describe the picture", max_output_tokens=1)

    assert with_image.usage is not None and text_only.usage is not None
    assert with_image.usage.input_tokens - text_only.usage.input_tokens >= PALIGEMMA_IMAGE_TOKENS
    assert with_image.usage.output_tokens == 3


def test_codex_s_request_is_accepted_as_codex_sends_it(live_hub: LiveHub, http: httpx.Client) -> None:
    codex = {
        "model": "demo",
        "stream": True,
        "input": [
            {
                "type": "message",
                "id": "msg_a",
                "role": "developer",
                "content": [{"type": "input_text", "text": "You are Codex."}],
            },
            {"type": "message", "id": "msg_b", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
        ],
        "tools": [
            {
                "type": "function",
                "name": "exec_command",
                "description": "Runs a command.",
                "strict": False,
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
            },
            {
                "type": "namespace",
                "name": "multi_agent_v1",
                "description": "Sub-agents.",
                "tools": [
                    {
                        "type": "function",
                        "name": "spawn_agent",
                        "strict": False,
                        "parameters": {"type": "object", "properties": {}},
                    }
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a23125-0923-75a3-90fe-58414d7da222",
        "client_metadata": {"x-codex-window-id": "01a23125:0"},
        "max_output_tokens": 3,  # Codex sends none; the tiny model would run to the profile's default
    }
    for _ in range(2):
        with http.stream("POST", "/v1/responses", json=codex) as response:
            assert response.status_code == 200, response.read()
            events = sse_events(response.read().decode())

    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert [tool["type"] for tool in final["tools"]] == ["function", "namespace", "web_search"]  # echoed as sent
    assert final["store"] is False and final["parallel_tool_calls"] is True
    assert any(event["type"] == "response.output_item.done" for event in events)  # Codex takes its answer here
    dropped = [line for line in live_hub.log().splitlines() if "tools of type web_search are not offered" in line]
    assert len(dropped) == 1  # once per type, whatever the number of requests


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"background": True}, "background"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"previous_response_id": "resp_0123"}, "previous_response_id"),
    ({"input": [{"type": "item_reference", "id": "msg_0123"}]}, "input[0].type"),
    ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws_1"}]}, "input[1].type"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
        "input[0].content[0].type",
    ),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": png_data_url()}]}]},
        "input[0].content[0]",
    ),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    (
        {
            "input": [
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "x"}]}
            ]
        },
        "input[0].output[0]",
    ),
    ({"tools": [{"type": "custom", "name": "grep"}]}, "tools[0].type"),
    (
        {"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "x"}]}]},
        "tools[0].tools[0].type",
    ),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ({"tool_choice": "required"}, "tool_choice"),  # no tools to call
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"input": None}, "input"),
]


@pytest.mark.parametrize(("fields", "param"), REFUSED, ids=[param for _, param in REFUSED])
def test_what_cannot_be_honoured_is_a_400_naming_it(http: httpx.Client, fields: dict[str, Any], param: str) -> None:
    response = http.post("/v1/responses", json={"model": "demo", "input": "hi", "max_output_tokens": 2, **fields})

    error = assert_openai_error(response, status=400, param=param)
    assert "Traceback" not in error["message"]


def test_previous_response_id_without_the_store_says_how_to_turn_it_on(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": "demo", "input": "hi", "previous_response_id": "resp_1"})

    error = assert_openai_error(response, status=400, param="previous_response_id")
    assert "MLXHUB_RESPONSES_STORE=1" in error["message"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_reading_or_deleting_a_response_without_the_store_is_a_404_saying_how_to_store(
    http: httpx.Client, method: str
) -> None:
    response = http.request(method, "/v1/responses/resp_0123456789")

    error = assert_openai_error(response, status=404)
    assert "MLXHUB_RESPONSES_STORE=1" in error["message"]


def test_store_true_without_the_store_is_accepted_and_the_response_says_it_was_not_stored(
    openai_client: openai.OpenAI,
) -> None:
    response = openai_client.responses.create(model="demo", input="hi", store=True, max_output_tokens=1)

    assert response.store is False


def test_responses_requests_are_audited_as_the_responses_endpoint(live_hub: LiveHub, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex[:12]
    headers = {"x-request-id": f"resp-audit-{marker}"}
    http.post("/v1/responses", json={"model": "demo", "input": "hi", "max_output_tokens": 2}, headers=headers)
    with http.stream(
        "POST",
        "/v1/responses",
        json={"model": "demo", "input": "hi", "max_output_tokens": 2, "stream": True},
        headers=headers,
    ) as streamed:
        streamed.read()
    http.post("/v1/responses", json={"model": "demo", "input": "hi", "background": True}, headers=headers)
    http.post("/v1/responses", json={"model": "demo", "input": 7}, headers=headers)  # refused before serving
    script = (
        "from audit.models import AuditLog; import json; print(json.dumps(list(AuditLog.objects.filter("
        f"request_id='resp-audit-{marker}').order_by('created_at').values_list("
        "'endpoint', 'status_code', 'streamed', 'error_type', 'completion_tokens'))))"
    )
    rows: list[list[Any]] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(rows) < 4:
        rows = json.loads(live_hub.manage("shell", "-c", script).stdout.strip().splitlines()[-1])
        time.sleep(0.3)

    assert sorted(map(tuple, rows)) == sorted(
        [
            ("responses", 200, False, "", 2),
            ("responses", 200, True, "", 2),
            ("responses", 400, False, "unsupported_parameter", 0),  # refused while being served
            ("responses", 400, False, "invalid_request_error", 0),  # refused before: the body did not validate
        ]
    )
