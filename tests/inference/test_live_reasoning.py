"""The reasoning split through the official clients, in all three protocols, streamed and whole, on a live server
serving the tiny model with a Qwen3-style thinking template ("thinker"). Random weights: the template opens the
think block, so the output starts inside it; a budget forces its end. Greedy decoding, so a streamed answer and a
whole one must agree exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import LiveHub
from tests.model_builders import build_thinking_model

pytestmark = pytest.mark.live

MODEL = "thinker"
USER = [{"role": "user", "content": "is nine odd"}]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def thinker(live_hub: LiveHub, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = build_thinking_model(tiny_model_dir, tmp_path_factory.mktemp("thinker") / "tiny-thinking")
    live_hub.manage("register_model", str(folder), "--name", MODEL)
    return MODEL


@pytest.fixture(scope="module")
def claude(live_hub: LiveHub) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_hub.base_url, api_key=live_hub.api_key, max_retries=0, timeout=60)


def extra(message: Any, name: str) -> Any:
    return (message.model_extra or {}).get(name)


# ---- chat completions ------------------------------------------------------------------------------------------


def test_chat_puts_the_thinking_in_reasoning_content_streamed_and_not(openai_client: openai.OpenAI, thinker: str):
    body: dict[str, Any] = {"model": thinker, "messages": USER, "max_tokens": 12, "temperature": 0}
    whole = openai_client.chat.completions.create(**body, extra_body={"thinking_token_budget": 4})
    stream = openai_client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}, extra_body={"thinking_token_budget": 4}
    )
    chunks = list(stream)

    message = whole.choices[0].message
    reasoning = extra(message, "reasoning_content")
    assert reasoning and extra(message, "reasoning") == reasoning
    assert message.content and "think>" not in message.content
    assert whole.usage is not None and whole.usage.completion_tokens_details is not None
    assert whole.usage.completion_tokens_details.reasoning_tokens == 4
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(extra(delta, "reasoning_content") or "" for delta in deltas) == reasoning
    assert "".join(extra(delta, "reasoning") or "" for delta in deltas) == reasoning
    assert "".join(delta.content or "" for delta in deltas) == message.content
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 4


def test_chat_template_kwargs_turn_thinking_off(openai_client: openai.OpenAI, thinker: str):
    answer = openai_client.chat.completions.create(
        model=thinker, messages=USER, max_tokens=6, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )

    message = answer.choices[0].message
    assert message.content and extra(message, "reasoning_content") is None
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 0


def test_reasoning_effort_reaches_the_template(openai_client: openai.OpenAI, thinker: str):
    plain = openai_client.chat.completions.create(model=thinker, messages=USER, max_tokens=1)
    effort = openai_client.chat.completions.create(model=thinker, messages=USER, max_tokens=1, reasoning_effort="high")

    assert plain.usage is not None and effort.usage is not None
    assert effort.usage.prompt_tokens > plain.usage.prompt_tokens


def test_a_template_kwarg_the_server_owns_is_refused_by_name(openai_client: openai.OpenAI, thinker: str):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model=thinker, messages=USER, max_tokens=1, extra_body={"chat_template_kwargs": {"tools": []}}
        )
    assert refused.value.param == "chat_template_kwargs.tools"  # type: ignore[attr-defined]


# ---- Responses ----------------------------------------------------------------------------------------------


def test_responses_give_a_reasoning_item_streamed_and_not(openai_client: openai.OpenAI, thinker: str):
    whole = openai_client.responses.create(model=thinker, input="is nine odd", max_output_tokens=8, temperature=0)
    with openai_client.responses.stream(
        model=thinker, input="is nine odd", max_output_tokens=8, temperature=0
    ) as stream:
        events = list(stream)
    streamed = events[-1].response  # ended at max_output_tokens: response.incomplete, not completed

    item = whole.output[0]
    assert item.type == "reasoning" and item.content and item.content[0].type == "reasoning_text"
    assert item.content[0].text and whole.output_text == ""
    assert whole.usage is not None and whole.usage.output_tokens_details.reasoning_tokens == 8
    kinds = [event.type for event in events]
    assert "response.reasoning_text.delta" in kinds and "response.reasoning_text.done" in kinds
    assert "response.output_text.delta" not in kinds
    deltas = "".join(event.delta for event in events if event.type == "response.reasoning_text.delta")
    assert deltas == item.content[0].text
    assert events[-1].type == "response.incomplete" and whole.status == "incomplete"
    assert streamed.output[0].type == "reasoning" and streamed.output[0].content == item.content


def test_responses_without_thinking_answer_in_a_message(openai_client: openai.OpenAI, thinker: str):
    answer = openai_client.responses.create(
        model=thinker, input="is nine odd", max_output_tokens=6, reasoning={"effort": "none"}
    )

    assert [item.type for item in answer.output] == ["message"] and answer.output_text
    assert answer.usage is not None and answer.usage.output_tokens_details.reasoning_tokens == 0
    assert answer.reasoning is not None and answer.reasoning.effort == "none"


# ---- Anthropic Messages -----------------------------------------------------------------------------------


def test_messages_give_thinking_blocks_with_a_signature_streamed_and_not(claude: anthropic.Anthropic, thinker: str):
    body: dict[str, Any] = {
        "model": thinker,
        "max_tokens": 12,
        "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 4},
        "extra_body": GREEDY,
    }
    whole = claude.messages.create(**body)
    with claude.messages.stream(**body) as stream:
        events = list(stream)
        streamed = stream.get_final_message()

    assert [block.type for block in whole.content] == ["thinking", "text"]
    thinking, text = whole.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert text.type == "text" and text.text and "think>" not in text.text
    assert [block.to_dict() for block in streamed.content] == [block.to_dict() for block in whole.content]
    deltas = [event.delta for event in events if event.type == "content_block_delta"]
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == thinking.thinking
    assert [d.signature for d in deltas if d.type == "signature_delta"] == [thinking.signature]


@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}])
def test_messages_without_thinking_enabled_have_no_thinking(claude: anthropic.Anthropic, thinker: str, thinking: Any):
    body: dict[str, Any] = {"model": thinker, "max_tokens": 6, "messages": USER}
    if thinking is not None:
        body["thinking"] = thinking
    message = claude.messages.create(**body)

    assert [block.type for block in message.content] == ["text"]


def test_a_budget_not_below_max_tokens_is_refused_in_anthropics_shape(claude: anthropic.Anthropic, thinker: str):
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model=thinker, max_tokens=8, messages=USER, thinking={"type": "enabled", "budget_tokens": 8}
        )
    assert "budget_tokens" in str(refused.value)


def test_each_of_n_choices_keeps_its_own_thinking_streamed_and_not(openai_client: openai.OpenAI, thinker: str):
    body: dict[str, Any] = {"model": thinker, "messages": USER, "max_tokens": 10, "n": 3, "seed": 7}
    whole = openai_client.chat.completions.create(**body, extra_body={"thinking_token_budget": 3})
    chunks = list(
        openai_client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}, extra_body={"thinking_token_budget": 3}
        )
    )

    assert [choice.index for choice in whole.choices] == [0, 1, 2]
    for choice in whole.choices:
        assert extra(choice.message, "reasoning_content")
        assert "think>" not in (choice.message.content or "")
    assert whole.usage is not None and whole.usage.completion_tokens_details is not None
    assert whole.usage.completion_tokens_details.reasoning_tokens == 3 * 3
    streamed: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (extra(choice.delta, "reasoning_content") or "")
    assert sorted(streamed) == [0, 1, 2] and all(streamed.values())
    assert [streamed[i] for i in range(3)] == [extra(choice.message, "reasoning_content") for choice in whole.choices]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 3 * 3
