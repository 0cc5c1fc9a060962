"""Log-probabilities, n choices, echo and several prompts against the live server, with the official
client, and lm-eval's loglikelihood request read the way lm-eval reads it."""

from __future__ import annotations

import json
import uuid
from operator import itemgetter
from pathlib import Path
from typing import Any

import pytest

from tests.inference.wire import sse_chunks

pytestmark = pytest.mark.live

# The server computes in the model's dtype (bfloat16), the reference below in float32.
TOLERANCE = 0.1


def unique_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"tell me about the lake {uuid.uuid4().hex}"}]


@pytest.fixture(scope="module")
def reference(demo_model_dir: Path) -> Any:
    """The demo model's log-softmax rows for a token list: one plain forward pass, outside the server."""
    import mlx.core as mx
    import mlx_lm

    model = mlx_lm.load(str(demo_model_dir))[0]

    def rows(tokens: list[int]) -> list[list[float]]:
        logits = model(mx.array(tokens)[None])[0].astype(mx.float32)
        return (logits - mx.logsumexp(logits, axis=-1, keepdims=True)).tolist()  # type: ignore[return-value]

    return rows


# ---- chat -----------------------------------------------------------------------------------------------------


def test_chat_logprobs_concatenate_to_the_content_and_greedy_picks_the_top_token(openai_client):
    completion = openai_client.chat.completions.create(
        model="demo", messages=unique_messages(), max_tokens=8, temperature=0, logprobs=True, top_logprobs=5
    )
    choice = completion.choices[0]
    content = choice.logprobs.content
    assert len(content) == 8
    assert "".join(entry.token for entry in content) == choice.message.content
    for entry in content:
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 5
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert entry.logprob == values[0]  # temperature 0: the chosen token is the top one
        assert entry.logprob <= 0


def test_chat_logprobs_streamed_say_what_the_whole_answer_says(openai_client):
    messages = unique_messages()
    fields = {"model": "demo", "messages": messages, "max_tokens": 6, "temperature": 0, "logprobs": True}
    whole = openai_client.chat.completions.create(**fields, top_logprobs=2)
    chunks = list(openai_client.chat.completions.create(**fields, top_logprobs=2, stream=True))
    streamed = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "".join(entry.token for entry in streamed) == text == whole.choices[0].message.content
    assert [entry.logprob for entry in streamed] == pytest.approx(
        [entry.logprob for entry in whole.choices[0].logprobs.content], abs=TOLERANCE
    )


def test_a_chat_completion_without_logprobs_has_none(openai_client):
    completion = openai_client.chat.completions.create(model="demo", messages=unique_messages(), max_tokens=2)
    assert completion.choices[0].logprobs is None


def test_n_chat_choices_are_indexed_count_the_prompt_once_and_reproduce_with_a_seed(openai_client):
    messages = unique_messages()
    fields = {"model": "demo", "messages": messages, "max_tokens": 5, "temperature": 1.0, "seed": 77}
    one = openai_client.chat.completions.create(**fields)
    first = openai_client.chat.completions.create(**fields, n=3)
    second = openai_client.chat.completions.create(**fields, n=3)
    assert [choice.index for choice in first.choices] == [0, 1, 2]
    assert first.usage.prompt_tokens == one.usage.prompt_tokens
    assert first.usage.completion_tokens == 15
    texts = [choice.message.content for choice in first.choices]
    assert texts == [choice.message.content for choice in second.choices]
    assert texts[0] == one.choices[0].message.content  # choice 0 draws with the seed itself
    assert len(set(texts)) > 1


def test_n_chat_choices_stream_with_their_indexes(openai_client):
    chunks = list(
        openai_client.chat.completions.create(
            model="demo",
            messages=unique_messages(),
            max_tokens=4,
            n=3,
            stream=True,
            temperature=0,
            stream_options={"include_usage": True},
        )
    )
    finished = {
        chunk.choices[0].index: chunk.choices[0].finish_reason
        for chunk in chunks
        if chunk.choices and chunk.choices[0].finish_reason
    }
    assert finished == {0: "length", 1: "length", 2: "length"}
    assert {chunk.choices[0].index for chunk in chunks if chunk.choices and chunk.choices[0].delta.content} == {0, 1, 2}
    assert chunks[-1].usage.completion_tokens == 12


# ---- text completions ------------------------------------------------------------------------------------------


def test_completion_logprobs_have_openais_parallel_lists(openai_client):
    completion = openai_client.completions.create(
        model="demo", prompt=f"the river {uuid.uuid4().hex}", max_tokens=6, temperature=0, logprobs=3
    )
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(logprobs.text_offset) == 6
    assert logprobs.text_offset == [sum(len(token) for token in logprobs.tokens[:i]) for i in range(6)]
    for value, top in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert value == max(top.values())


def test_echo_with_max_tokens_0_scores_the_prompt(openai_client, tokenizer, reference):
    prompt = f"the quiet lake {uuid.uuid4().hex[:6]}"
    completion = openai_client.completions.create(
        model="demo", prompt=prompt, max_tokens=0, echo=True, logprobs=0, temperature=0
    )
    choice = completion.choices[0]
    tokens = tokenizer.encode(prompt)
    logprobs = choice.logprobs
    assert choice.text == tokenizer.decode(tokens) and "".join(logprobs.tokens) == choice.text
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    rows = reference(tokens)
    assert logprobs.token_logprobs[1:] == pytest.approx(
        [rows[i - 1][tokens[i]] for i in range(1, len(tokens))], abs=TOLERANCE
    )
    assert completion.usage.prompt_tokens == len(tokens) and completion.usage.completion_tokens == 0


def test_several_prompts_with_n_are_indexed_prompt_times_n_plus_j(openai_client):
    completion = openai_client.completions.create(
        model="demo", prompt=["one river", "two lakes", "three seas"], max_tokens=2, n=2, seed=5
    )
    assert [choice.index for choice in completion.choices] == list(range(6))
    assert completion.usage.completion_tokens == 12


def test_several_prompts_stream_their_choices(http):
    body = {"model": "demo", "prompt": [[5, 6, 7], [8, 9]], "max_tokens": 3, "stream": True, "logprobs": 1}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    chunks = [chunk for chunk in sse_chunks(response.text) if chunk.get("choices")]
    ended = sorted(chunk["choices"][0]["index"] for chunk in chunks if chunk["choices"][0]["finish_reason"])
    assert ended == [0, 1]
    for index in (0, 1):
        own = [chunk["choices"][0] for chunk in chunks if chunk["choices"][0]["index"] == index]
        tokens = [token for part in own if part["logprobs"] for token in part["logprobs"]["tokens"]]
        assert "".join(tokens) == "".join(part["text"] for part in own)


def test_best_of_returns_the_choice_with_the_best_mean_logprob_of_those_made(openai_client, tokenizer):
    fields = {"model": "demo", "prompt": f"a lake {uuid.uuid4().hex}", "max_tokens": 4, "seed": 9, "temperature": 1.0,
              "logit_bias": {str(tokenizer.eos_token_id): -100}}  # fmt: skip  # sampled, yet every choice makes 4
    made = openai_client.completions.create(**fields, n=3, logprobs=0)
    best = openai_client.completions.create(**fields, best_of=3)
    means = [sum(choice.logprobs.token_logprobs) / 4 for choice in made.choices]
    assert len(best.choices) == 1 and best.choices[0].index == 0
    assert best.choices[0].text == made.choices[means.index(max(means))].text
    assert best.choices[0].logprobs is None  # not asked for: used to rank, not returned
    assert best.usage.completion_tokens == 12  # every choice made is counted


# ---- lm-eval's loglikelihood request ----------------------------------------------------------------------------


def lm_eval_parse_logprobs(outputs: dict[str, Any], ctxlens: list[int]) -> list[tuple[float, bool]]:
    """lm-eval's LocalCompletionsAPI.parse_logprobs (lm_eval/models/openai_completions.py), as it reads a
    response: for each choice by index, the continuation's values ``token_logprobs[ctxlen:-1]`` summed, and
    greedy when each equals the best of its ``top_logprobs``."""
    results = []
    for choice, ctxlen in zip(sorted(outputs["choices"], key=itemgetter("index")), ctxlens, strict=False):
        values = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        tops = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        greedy = all(value == max(top.values()) for value, top in zip(values, tops, strict=False))
        results.append((sum(values), greedy))
    return results


@pytest.mark.parametrize("max_tokens", [1, 0])
def test_lm_evals_loglikelihood_request_gets_what_it_parses(http, tokenizer, reference, max_tokens):
    context = tokenizer.encode("once upon a time there was")
    greedy = list(context)
    for _ in range(3):  # the model's own continuation: greedy
        greedy.append(max(range(len(reference(greedy)[-1])), key=reference(greedy)[-1].__getitem__))
    other = [*context, 11, 12, 13]  # almost surely not greedy
    body = {
        "model": "demo",
        "prompt": [greedy, other],
        "temperature": 0,
        "max_tokens": max_tokens,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()
    if max_tokens == 0:  # nothing generated: the last entry is the prompt's own, so lm-eval's [:-1] wants one more
        for choice in outputs["choices"]:
            assert len(choice["logprobs"]["tokens"]) == len(context) + 3
        return
    parsed = lm_eval_parse_logprobs(outputs, [len(context), len(context)])
    for (total, is_greedy), prompt in zip(parsed, [greedy, other], strict=True):
        rows = reference(prompt)
        expected = sum(rows[i - 1][prompt[i]] for i in range(len(context), len(prompt)))
        assert total == pytest.approx(expected, abs=TOLERANCE)
        assert is_greedy == all(
            max(range(len(rows[i - 1])), key=rows[i - 1].__getitem__) == prompt[i]
            for i in range(len(context), len(prompt))
        )
    assert parsed[0][1] is True and parsed[1][1] is False
    print(
        json.dumps({"request": body, "choice_0_logprobs": outputs["choices"][0]["logprobs"], "parsed": parsed})[:2000]
    )
