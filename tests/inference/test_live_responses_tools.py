"""Tool calls and structured output through /v1/responses on a local model, with the official openai client.

These need the engine's tool calls and grammars (``inference.engine.grammars``): a forced call or a JSON schema
is enforced while decoding, so even the tiny random model ends its turn — ``response.completed``, which the
SDK's stream helper, ``responses.parse`` and agent frameworks require. Schemas are bounded (short strings,
small integers) and forced calls single (``parallel_tool_calls: false``): a random model ends inside those,
where it would otherwise write one more call, or one more digit, until max_output_tokens.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.inference.test_live_responses import sse_events

pytestmark = pytest.mark.live

WEATHER: Any = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
SPAWN: Any = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    # No arguments at all: the call is complete at "{}", whatever a random model would write.
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        }
    ],
}


class City(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    population: int = Field(ge=0, le=99)


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "population": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["name", "population"],
    "additionalProperties": False,
}


def test_a_named_tool_choice_makes_a_function_call_item(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="demo",
        input="what is the weather in Rome?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "weather"},
        parallel_tool_calls=False,
        max_output_tokens=200,
    )

    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call" and call.name == "weather"
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)


def test_a_required_call_streams_its_arguments_and_the_helper_gets_its_final_response(
    openai_client: openai.OpenAI,
) -> None:
    with openai_client.responses.stream(
        model="demo",
        input="weather?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=200,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [event.type for event in events]
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    calls = [item for item in final.output if item.type == "function_call"]
    assert calls and all(item.status == "completed" for item in calls)
    done = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert [event.arguments for event in done] == [item.arguments for item in calls]
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_a_namespaced_function_call_carries_its_namespace(http: httpx.Client) -> None:
    body = {
        "model": "demo",
        "input": "spawn a helper",
        "tools": [WEATHER, SPAWN, {"type": "web_search"}],
        "tool_choice": {
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "spawn_agent"}],
        },
        "parallel_tool_calls": False,
        "max_output_tokens": 100,
        "stream": True,
    }
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200, response.read()
        events = sse_events(response.read().decode())

    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    [call] = final["output"]
    assert (call["name"], call["namespace"]) == ("spawn_agent", "multi_agent_v1")
    added = next(event["item"] for event in events if event["type"] == "response.output_item.added")
    assert added["namespace"] == "multi_agent_v1" and added["status"] == "in_progress"


def test_a_json_schema_format_is_parsed_by_the_sdk(openai_client: openai.OpenAI) -> None:
    parsed = openai_client.responses.parse(model="demo", input="a city", text_format=City, max_output_tokens=200)

    assert parsed.status == "completed"
    assert isinstance(parsed.output_parsed, City)

    with openai_client.responses.stream(
        model="demo", input="a city", text_format=City, max_output_tokens=200
    ) as stream:
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, City)


def test_a_json_object_format_answers_a_json_object(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="demo", input="a city as JSON", text={"format": {"type": "json_object"}}, max_output_tokens=8
    )

    # Any object is unbounded (a random model may write keys forever): what there is must be one's start.
    assert response.output_text.startswith("{")


def test_instructors_responses_tools_request_is_answered_with_the_forced_call(http: httpx.Client) -> None:
    body = {
        "model": "demo",
        "input": [{"role": "user", "content": "a city"}],
        "text": {"format": {"type": "json_schema", "name": "City", "strict": True, "schema": CITY_SCHEMA}},
        "tool_choice": {"type": "function", "name": "City"},
        "tools": [{"type": "function", "name": "City", "parameters": CITY_SCHEMA, "description": "Extract a City."}],
        "parallel_tool_calls": False,  # instructor sends none; see the module's docstring
        "max_output_tokens": 200,
    }
    response = http.post("/v1/responses", json=body)

    assert response.status_code == 200, response.text
    [call] = response.json()["output"]
    assert call["type"] == "function_call" and call["name"] == "City"
    City.model_validate_json(call["arguments"])


def test_a_forced_call_then_its_output_gets_a_json_answer(openai_client: openai.OpenAI) -> None:
    first = openai_client.responses.create(
        model="demo",
        input="weather in Rome?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=200,
    )
    call = next(item for item in first.output if item.type == "function_call")
    second = openai_client.responses.parse(
        model="demo",
        input=[
            {"role": "user", "content": "weather in Rome?"},
            call.model_dump(exclude_none=True),  # echoed as the SDK hands it back, id and status included
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=[WEATHER],
        text_format=City,
        max_output_tokens=200,
    )

    assert second.status == "completed" and isinstance(second.output_parsed, City)
