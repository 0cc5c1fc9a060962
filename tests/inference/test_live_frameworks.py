"""The frameworks people build on MLX Hub, pinned in requirements-test.txt, against a live server: LangChain's
ChatOpenAI, the OpenAI Agents SDK, pydantic-ai, instructor, the openai SDK's helpers and the anthropic client.

Random weights write gibberish, so nothing here reads content: each test asserts what the framework itself
checks (a pydantic model that validates, tool calls whose arguments validate against the tool's schema, how
the turn finished) and the audit rows the requests left. Structured turns run on the tool-template model
with bounded schemas (enums, booleans, small integers, short strings), which the grammar always ends; turns
a framework needs to end in free text (the Agents SDK after a tool call, a plain reply) run on the terse
model, which ends them by itself. Several of these clients fail a turn stopped at the token limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import instructor
import jsonschema
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.conftest import LiveHub
from tests.inference import tool_kit
from tests.inference.client_kit import TERSE_MODEL, TOOLS_MODEL, assert_served, client_hub, request_id

pytestmark = pytest.mark.live

tool_model_dir = tool_kit.tool_model_dir  # fixtures
terse_model_dir = tool_kit.terse_model_dir

# Forced calls and JSON take about 60 tokens on these models (tests/inference/test_terse_model.py).
STRUCTURED_MAX_TOKENS = 300
TEXT_MAX_TOKENS = 64


class Verdict(BaseModel):
    """A judgement."""

    # additionalProperties: false in its schema: a schema that allows other keys lets a random model add
    # them, with values of any length, until max_tokens.
    model_config = ConfigDict(extra="forbid")
    kind: Literal["cat", "dog", "bird"]
    ok: bool
    count: int = Field(ge=0, le=9)
    note: str = Field(max_length=8)


@tool
def get_weather(city: Literal["Rome", "Oslo"], unit: Literal["C", "F"]) -> str:
    """The weather in a city."""
    return "sunny"


# The Agents SDK's tool runs in the test: what it was called with is kept here.
AGENT_TOOL_CALLS: list[str] = []


@function_tool
def weather(city: Literal["Rome", "Oslo"]) -> str:
    """The weather in a city."""
    AGENT_TOOL_CALLS.append(city)
    return "sunny"


ANTHROPIC_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"enum": ["Rome", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tool_model_dir: Any, terse_model_dir: Any) -> Iterator[LiveHub]:
    set_tracing_disabled(True)  # the Agents SDK would otherwise export traces to OpenAI
    with client_hub(
        tmp_path_factory.mktemp("frameworks-hub"), tool_model=tool_model_dir, terse_model=terse_model_dir
    ) as live:
        yield live


def openai_client(hub: LiveHub, rid: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{hub.base_url}/v1",
        api_key=hub.api_key,
        max_retries=0,
        timeout=120,
        default_headers={"x-request-id": rid},
    )


def async_openai_client(hub: LiveHub, rid: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{hub.base_url}/v1",
        api_key=hub.api_key,
        max_retries=0,
        timeout=120,
        default_headers={"x-request-id": rid},
    )


def chat_openai(hub: LiveHub, rid: str, *, model: str, max_tokens: int) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        stream_usage=True,  # on by default only for OpenAI's own URL
        base_url=f"{hub.base_url}/v1",
        api_key=hub.api_key,
        max_retries=0,
        max_tokens=max_tokens,
        default_headers={"x-request-id": rid},
    )


def assert_valid_verdict(value: Any) -> None:
    assert isinstance(value, Verdict), value
    Verdict.model_validate(value.model_dump())


# ---- LangChain ---------------------------------------------------------------------------------------


def test_langchain_invoke_and_stream_end_their_turns_with_stop(hub: LiveHub) -> None:
    rid = request_id("lc-text")
    llm = chat_openai(hub, rid, model=TERSE_MODEL, max_tokens=TEXT_MAX_TOKENS)

    message = llm.invoke("hi")
    merged: AIMessageChunk | None = None
    for chunk in llm.stream("hi"):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk

    assert isinstance(message.content, str)
    assert message.response_metadata["finish_reason"] == "stop"
    assert merged is not None and isinstance(merged.content, str)
    assert merged.response_metadata["finish_reason"] == "stop"
    rows = assert_served(hub, rid, endpoint="chat.completions", models=[TERSE_MODEL] * 2)
    assert [row["streamed"] for row in rows] == [False, True]
    for answer, row in zip((message, merged), rows, strict=True):
        assert answer.usage_metadata is not None
        assert answer.usage_metadata["input_tokens"] == row["prompt_tokens"]
        assert answer.usage_metadata["output_tokens"] == row["completion_tokens"]


def test_langchain_bind_tools_any_calls_the_tool_with_valid_arguments_and_takes_the_tool_turn(hub: LiveHub) -> None:
    rid = request_id("lc-tools")
    llm = chat_openai(hub, rid, model=TOOLS_MODEL, max_tokens=STRUCTURED_MAX_TOKENS)
    # strict: LangChain writes additionalProperties: false only then, and a schema that allows other keys
    # lets a random model add them until max_tokens.
    bound = llm.bind_tools([get_weather], tool_choice="any", parallel_tool_calls=False, strict=True)
    parameters = convert_to_openai_tool(get_weather)["function"]["parameters"]

    first = bound.invoke("weather in Rome?")
    # The assistant message goes back as LangChain echoes it ({"content": null, "tool_calls": [...]}).
    second = bound.invoke(
        [HumanMessage("weather in Rome?"), first, ToolMessage("sunny", tool_call_id=first.tool_calls[0]["id"])]
    )

    for answer in (first, second):
        assert answer.response_metadata["finish_reason"] == "tool_calls"
        assert answer.tool_calls and answer.invalid_tool_calls == []
        for call in answer.tool_calls:
            assert call["name"] == "get_weather"
            jsonschema.validate(call["args"], parameters)
    assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL] * 2)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output_returns_a_valid_model(hub: LiveHub, method: str) -> None:
    # json_schema (the default) goes through the openai SDK's parse(), which raises on a turn cut at the limit.
    rid = request_id(f"lc-structured-{method}")
    llm = chat_openai(hub, rid, model=TOOLS_MODEL, max_tokens=STRUCTURED_MAX_TOKENS)

    verdict = llm.with_structured_output(Verdict, method=method, strict=True).invoke("judge this")

    assert_valid_verdict(verdict)
    assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL])


# ---- the OpenAI Agents SDK -----------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agents_sdk_responses_agent_calls_its_tool_and_then_answers(hub: LiveHub, streamed: bool) -> None:
    # Only response.completed counts for the SDK (a response that ends incomplete raises ModelBehaviorError):
    # the answer after the tool result is free text, so the terse model serves the whole run.
    rid = request_id("agents-responses")
    model = OpenAIResponsesModel(model=TERSE_MODEL, openai_client=async_openai_client(hub, rid))
    # tool_choice "required" for the first turn; the SDK resets it once the tool has been called. The forced
    # call takes about 50 tokens, the free-text answer about 4.
    settings = ModelSettings(tool_choice="required", parallel_tool_calls=False, max_tokens=STRUCTURED_MAX_TOKENS)
    agent = Agent(name="weather", instructions="You help.", tools=[weather], model=model, model_settings=settings)
    AGENT_TOOL_CALLS.clear()

    async def run() -> Any:
        if not streamed:
            return await Runner.run(agent, "weather in Rome?")
        result = Runner.run_streamed(agent, "weather in Rome?")
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
        return result

    result = asyncio.run(run())

    assert [type(item) for item in result.new_items] == [ToolCallItem, ToolCallOutputItem, MessageOutputItem]
    assert len(AGENT_TOOL_CALLS) == 1 and AGENT_TOOL_CALLS[0] in {"Rome", "Oslo"}
    assert isinstance(result.final_output, str)
    rows = assert_served(hub, rid, endpoint="responses", models=[TERSE_MODEL] * 2)
    usage = result.context_wrapper.usage  # read from each response.completed
    assert usage.requests == 2
    assert usage.input_tokens == sum(row["prompt_tokens"] for row in rows)
    assert usage.output_tokens == sum(row["completion_tokens"] for row in rows)


def test_an_agents_sdk_chat_completions_agent_with_an_output_type_returns_a_valid_model(hub: LiveHub) -> None:
    # The SDK sends the tools and response_format together: a forced call first, then the JSON, both
    # enforced by the grammar.
    rid = request_id("agents-chat")
    model = OpenAIChatCompletionsModel(model=TOOLS_MODEL, openai_client=async_openai_client(hub, rid))
    settings = ModelSettings(tool_choice="required", parallel_tool_calls=False, max_tokens=STRUCTURED_MAX_TOKENS)
    agent = Agent(
        name="judge", instructions="Judge.", tools=[weather], output_type=Verdict, model=model, model_settings=settings
    )
    AGENT_TOOL_CALLS.clear()

    result = asyncio.run(Runner.run(agent, "check the weather, then judge"))

    assert_valid_verdict(result.final_output)
    kinds = [type(item) for item in result.new_items]
    assert kinds[0] is ToolCallItem and kinds[-1] is MessageOutputItem and ToolCallOutputItem in kinds
    assert AGENT_TOOL_CALLS and set(AGENT_TOOL_CALLS) <= {"Rome", "Oslo"}
    assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL] * 2)


# ---- pydantic-ai -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["tool", "native"])
def test_a_pydantic_ai_agent_returns_a_valid_output_type(hub: LiveHub, output: str) -> None:
    # The default output is a forced final_result tool (tool_choice "required"); NativeOutput is json_schema.
    rid = request_id(f"pydantic-ai-{output}")
    provider = OpenAIProvider(openai_client=async_openai_client(hub, rid))
    model = OpenAIChatModel(TOOLS_MODEL, provider=provider)
    output_type: Any = Verdict if output == "tool" else NativeOutput(Verdict)
    agent = PydanticAgent(
        model,
        output_type=output_type,
        model_settings={"max_tokens": STRUCTURED_MAX_TOKENS, "parallel_tool_calls": False},
    )

    result = asyncio.run(agent.run("judge this"))

    assert_valid_verdict(result.output)
    (row,) = assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL])
    assert result.usage.requests == 1
    assert (result.usage.input_tokens, result.usage.output_tokens) == (row["prompt_tokens"], row["completion_tokens"])


# ---- instructor ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA], ids=["TOOLS", "JSON_SCHEMA"])
def test_instructor_returns_a_valid_model(hub: LiveHub, mode: instructor.Mode) -> None:
    # TOOLS forces a named call; JSON_SCHEMA sends a schema with no strict and no additionalProperties.
    rid = request_id(f"instructor-{mode.name}")
    client = instructor.from_openai(openai_client(hub, rid), mode=mode)

    verdict = client.chat.completions.create(
        model=TOOLS_MODEL,
        response_model=Verdict,
        messages=[{"role": "user", "content": "judge this"}],
        max_retries=0,  # one request: a retry would hide an invalid answer
        max_tokens=STRUCTURED_MAX_TOKENS,
    )

    assert_valid_verdict(verdict)
    assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL])


# ---- the openai SDK's helpers ----------------------------------------------------------------------------


def test_the_openai_sdks_parse_returns_a_valid_model(hub: LiveHub) -> None:
    rid = request_id("openai-parse")
    completion = openai_client(hub, rid).chat.completions.parse(
        model=TOOLS_MODEL,
        messages=[{"role": "user", "content": "judge this"}],
        response_format=Verdict,
        max_tokens=STRUCTURED_MAX_TOKENS,
    )

    (choice,) = completion.choices
    assert choice.finish_reason == "stop" and choice.message.refusal is None
    assert_valid_verdict(choice.message.parsed)
    assert choice.message.content is not None
    assert Verdict.model_validate_json(choice.message.content) == choice.message.parsed
    assert_served(hub, rid, endpoint="chat.completions", models=[TOOLS_MODEL])


def test_the_openai_sdks_responses_stream_gets_its_final_response(hub: LiveHub) -> None:
    # get_final_response() raises unless the stream ends with response.completed.
    rid = request_id("openai-responses-stream")
    client = openai_client(hub, rid)

    with client.responses.stream(model=TERSE_MODEL, input="hi", max_output_tokens=TEXT_MAX_TOKENS) as stream:
        events = list(stream)
        final = stream.get_final_response()

    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert final.status == "completed" and final.id == events[0].response.id
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert final.output_text == deltas
    (row,) = assert_served(hub, rid, endpoint="responses", models=[TERSE_MODEL])
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (row["prompt_tokens"], row["completion_tokens"])


# ---- the anthropic client --------------------------------------------------------------------------------


def test_the_anthropic_client_calls_a_tool_with_valid_input_and_takes_the_tool_result(hub: LiveHub) -> None:
    rid = request_id("anthropic-tools")
    client = anthropic.Anthropic(
        base_url=hub.base_url, api_key=hub.api_key, max_retries=0, default_headers={"x-request-id": rid}
    )
    question: Any = {"role": "user", "content": "weather in Rome?"}

    called = client.messages.create(
        model=TOOLS_MODEL,
        max_tokens=STRUCTURED_MAX_TOKENS,
        messages=[question],
        tools=[ANTHROPIC_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    (use,) = [block for block in called.content if block.type == "tool_use"]
    answered = client.messages.create(
        model=TERSE_MODEL,
        max_tokens=TEXT_MAX_TOKENS,
        messages=[
            question,
            {"role": "assistant", "content": called.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
        tools=[ANTHROPIC_TOOL],
    )
    with client.messages.stream(
        model=TOOLS_MODEL,
        max_tokens=STRUCTURED_MAX_TOKENS,
        messages=[question],
        tools=[ANTHROPIC_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()

    assert called.stop_reason == "tool_use" and use.name == "get_weather"
    jsonschema.validate(use.input, ANTHROPIC_TOOL["input_schema"])
    assert answered.stop_reason == "end_turn"
    assert all(block.type == "text" for block in answered.content)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert streamed.stop_reason == "tool_use"
    uses = [block for block in streamed.content if block.type == "tool_use"]
    assert uses and all(block.name == "get_weather" for block in uses)
    for block in uses:
        jsonschema.validate(block.input, ANTHROPIC_TOOL["input_schema"])
        assert json.dumps(block.input)  # the streamed input_json_delta pieces joined into one object
    assert_served(hub, rid, endpoint="messages", models=[TOOLS_MODEL, TERSE_MODEL, TOOLS_MODEL])
