"""Responses input items as the engine's conversation, and Responses tools as what the engine is offered."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from inference import responses_requests
from inference.errors import OpenAIError
from inference.responses_requests import responses_conversation, responses_tool_plan, responses_tools
from inference.schemas.responses import InputItem, ResponsesRequest

FUNCTION = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": False}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "tools": [{"type": "function", "name": "spawn_agent"}, {"type": "function", "name": "close_agent"}],
}


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "demo", "input": "hi", **fields})


def conversation(items: list[dict[str, Any]], *, instructions: str | None = None, vision: bool = False) -> Any:
    pairs = [(f"input[{index}]", InputItem.model_validate(item)) for index, item in enumerate(items)]
    return responses_conversation(pairs, instructions=instructions, vision=vision)


def test_hosted_tools_are_not_offered_and_logged_once_per_type(caplog, monkeypatch):
    monkeypatch.setattr(responses_requests, "_dropped", set())  # whatever earlier tests logged
    tools = [FUNCTION, NAMESPACE, {"type": "web_search", "external_web_access": False}, {"type": "file_search"}]
    with caplog.at_level(logging.INFO, logger="inference.responses_requests"):
        offered = responses_tools(request(tools=tools))
        responses_tools(request(tools=tools))

    assert [tool["function"]["name"] for tool in offered.functions] == ["exec_command", "spawn_agent", "close_agent"]
    assert offered.namespaces == {"spawn_agent": "multi_agent_v1", "close_agent": "multi_agent_v1"}
    dropped = [record.getMessage() for record in caplog.records if "not offered" in record.getMessage()]
    assert len([line for line in dropped if "web_search " in line]) == 1
    assert len([line for line in dropped if "file_search " in line]) == 1


def test_auto_offers_the_tools_and_enforces_nothing():
    plan, namespaces = responses_tool_plan(request(tools=[FUNCTION, NAMESPACE], tool_choice="auto"))

    assert plan.grammar is None
    assert plan.tools is not None
    assert [tool["function"]["name"] for tool in plan.tools] == ["exec_command", "spawn_agent", "close_agent"]
    assert namespaces["spawn_agent"] == "multi_agent_v1"


def test_allowed_tools_narrows_what_is_offered_and_none_offers_nothing():
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "spawn_agent"}]}
    plan, _ = responses_tool_plan(request(tools=[FUNCTION, NAMESPACE], tool_choice=choice))
    assert plan.tools is not None and [tool["function"]["name"] for tool in plan.tools] == ["spawn_agent"]

    nothing, _ = responses_tool_plan(request(tools=[FUNCTION], tool_choice="none"))
    assert nothing.tools is None and nothing.grammar is None
    # Hosted tools only: nothing is offered, and nothing fails.
    hosted, _ = responses_tool_plan(request(tools=[{"type": "web_search"}]))
    assert hosted.tools is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom", "name": "grep"}]}, "tools[0].type"),
        ({"tools": [{"type": "weird_tool"}]}, "tools[0].type"),
        ({"tools": [{"type": "namespace", "tools": []}]}, "tools[0].name"),
        ({"tools": [FUNCTION, FUNCTION]}, "tools"),
        ({"tools": [FUNCTION], "tool_choice": {"type": "custom", "name": "x"}}, "tool_choice.type"),
        (
            {"tools": [FUNCTION], "tool_choice": {"type": "allowed_tools", "mode": "none", "tools": []}},
            "tool_choice.mode",
        ),
        ({"tools": [FUNCTION], "tool_choice": 7}, "tool_choice"),
    ],
)
def test_tools_that_cannot_be_offered_are_refused_by_name(fields, param):
    with pytest.raises(OpenAIError) as refused:
        responses_tool_plan(request(**fields))
    assert refused.value.param == param and refused.value.status == 400


def test_calls_join_the_assistant_turn_before_them_and_system_text_joins_the_first_turn():
    turns = conversation(
        [
            {"role": "user", "content": "run it"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Running."}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
            {"type": "function_call", "call_id": "call_2", "name": "spawn_agent", "namespace": "multi_agent_v1"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
            {"role": "developer", "content": "Be careful."},
            {"type": "function_call", "call_id": "call_3", "name": "exec_command"},
        ],
        instructions="You are Codex.",
    )

    assert turns.messages == [
        {"role": "system", "content": "You are Codex.\n\nBe careful."},
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": "Running.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd": "ls"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "spawn_agent", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt", "name": "exec_command"},
        {"role": "tool", "tool_call_id": "call_2", "content": "ok", "name": "spawn_agent"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}
            ],
        },
    ]


def test_images_go_in_user_turns_of_vision_models_in_order():
    picture = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"}
    items = [{"role": "user", "content": [{"type": "input_text", "text": "what is it?"}, picture]}]

    turns = conversation(items, vision=True)
    assert turns.messages == [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, {"type": "image"}]}]
    assert turns.images == [("data:image/png;base64,AAAA", "input[0].content[1].image_url")]
    with pytest.raises(OpenAIError) as refused:
        conversation(items, vision=False)
    assert refused.value.param == "input[0].content[1]"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"content": "no type, no role"}, "input[0].type"),
        ({"type": "item_reference", "id": "msg_1"}, "input[0].type"),
        ({"role": "assistant", "content": [{"type": "input_image", "image_url": "x"}]}, "input[0].content[0]"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}, "input[0].content[0].file_id"),
        (
            {"type": "function_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}},
            "input[0].output",
        ),
    ],
)
def test_items_that_cannot_be_shown_are_refused_by_name(item, param):
    with pytest.raises(OpenAIError) as refused:
        conversation([item], vision=True)
    assert refused.value.param == param


def test_reasoning_items_are_not_shown_again():
    turns = conversation(
        [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
            {"role": "user", "content": "hi"},
        ]
    )

    assert turns.messages == [{"role": "user", "content": "hi"}]
