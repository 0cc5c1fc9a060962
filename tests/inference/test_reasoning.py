"""The reasoning split in the engine, on the tiny model with a Qwen3-style thinking template (random weights: the
template opens the think block, so the output starts inside it; the budget forces its end)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from inference.engine import text as text_runner_module
from inference.engine.types import GrammarSpec, ModelSpec
from tests.inference.engine_kit import generation, run
from tests.inference.tool_kit import ADD, TOOLS
from tests.model_builders import build_thinking_model

USER = [{"role": "user", "content": "is nine odd"}]


@pytest.fixture(scope="module")
def thinking_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_thinking_model(tiny_model_dir, tmp_path_factory.mktemp("thinking") / "tiny-thinking")


@pytest.fixture
def spec(thinking_dir: Path) -> ModelSpec:
    return {"key": str(thinking_dir), "path": str(thinking_dir), "context_length": None}


def split(events: list[Any]) -> tuple[str, str]:
    reasoning = "".join(event["text"] for event in events if event["type"] == "reasoning")
    content = "".join(event["text"] for event in events if event["type"] in ("delta", "finish"))
    return reasoning, content


async def test_a_think_block_the_template_opened_is_reasoning_never_content(engine, spec):
    outcome = await run(engine, generation(spec, messages=USER, max_tokens=12))

    reasoning, content = split(outcome.events)
    finish = outcome.last
    assert reasoning and content == ""
    assert finish["finish_reason"] == "length"
    assert finish["reasoning_tokens"] == finish["completion_tokens"] == 12


async def test_the_budget_forces_the_end_of_thinking_and_the_answer_follows(engine, spec):
    outcome = await run(engine, generation(spec, messages=USER, max_tokens=12, thinking_budget=4))

    reasoning, content = split(outcome.events)
    finish = outcome.last
    assert reasoning and content
    assert "<think>" not in reasoning + content and "</think>" not in reasoning + content
    assert finish["reasoning_tokens"] == 4  # three thoughts and the forced closing marker
    assert finish["completion_tokens"] == 12
    kinds = [event["type"] for event in outcome.events if event["type"] in ("reasoning", "delta")]
    assert kinds == sorted(kinds, key=lambda kind: kind == "delta"), "all reasoning comes before the answer"


async def test_thinking_turned_off_closes_the_block_in_the_prompt(engine, spec):
    thinking = await run(engine, generation(spec, messages=USER, max_tokens=6))
    off = await run(engine, generation(spec, messages=USER, max_tokens=6, thinking=False))

    reasoning, content = split(off.events)
    assert reasoning == "" and content
    assert off.last["reasoning_tokens"] == 0
    # The template renders the closed block itself (enable_thinking=False): "\n</think>\n\n" more than "<think>\n".
    assert off.last["prompt_tokens"] > thinking.last["prompt_tokens"]


async def test_a_grammar_turns_thinking_off(engine, spec):
    grammar = GrammarSpec("tool_calls", tools=TOOLS, choice="add", parallel=False)
    outcome = await run(engine, generation(spec, messages=USER, tools=list(TOOLS), grammar=grammar, max_tokens=60))

    assert "reasoning" not in [event["type"] for event in outcome.events]
    assert outcome.last["finish_reason"] == "tool_calls"


async def test_template_kwargs_reach_the_chat_template(engine, spec):
    plain = await run(engine, generation(spec, messages=USER, max_tokens=1))
    effort = await run(
        engine, generation(spec, messages=USER, max_tokens=1, template_kwargs={"reasoning_effort": "high"})
    )

    assert effort.last["prompt_tokens"] > plain.last["prompt_tokens"]


async def test_a_final_assistant_message_is_continued_when_prefilling(engine, spec):
    messages = [*USER, {"role": "assistant", "content": "Yes, because"}]
    answered = await run(engine, generation(spec, messages=messages, max_tokens=4))
    continued = await run(engine, generation(spec, messages=messages, max_tokens=4, prefill=True))

    # Answered: the turn is closed and a new one opens its think block. Continued: the answer goes on.
    assert split(answered.events)[0] and not split(answered.events)[1]
    assert not split(continued.events)[0] and split(continued.events)[1]
    assert continued.last["prompt_tokens"] < answered.last["prompt_tokens"]


class Scripted:
    """A logits processor that makes the model write ``ids`` (real decoding, detokenizing and parsing after)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = list(ids)

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if not self.ids:
            return logits
        forced = self.ids.pop(0)
        return mx.where(mx.arange(logits.shape[-1]) == forced, mx.zeros_like(logits), -mx.inf)


async def test_a_tool_call_made_after_thinking_is_parsed(engine, spec, thinking_dir, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(thinking_dir))
    arguments = {"x": 1, "y": 2}
    written = (
        "look at it</think>\n\n<tool_call>\n" + json.dumps({"name": "add", "arguments": arguments}) + "\n</tool_call>"
    )
    ids = tokenizer.encode(written, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    monkeypatch.setattr(text_runner_module, "make_request_processors", lambda sampling: [Scripted([*ids, eos])])

    outcome = await run(engine, generation(spec, messages=USER, tools=[ADD], max_tokens=len(ids) + 4))

    reasoning, content = split(outcome.events)
    calls = [event for event in outcome.events if event["type"] == "tool_call"]
    pieces = "".join(event["arguments"] for event in outcome.events if event["type"] == "tool_arguments")
    assert reasoning == "look at it"
    assert [call["name"] for call in calls] == ["add"] and json.loads(pieces) == arguments
    assert "tool_call" not in content and "think" not in content
    assert outcome.last["finish_reason"] == "tool_calls"
    assert outcome.last["reasoning_tokens"] == len(tokenizer.encode("look at it</think>", add_special_tokens=False))
