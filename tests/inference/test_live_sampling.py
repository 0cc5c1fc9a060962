"""Sampling parameters and stop strings, observed through the output of the live server's random model."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.live

PROMPT = "once upon a time there was a little boy who"
MESSAGES = [{"role": "user", "content": "write me a story about the sea"}]


# Sampling fields MLX Hub takes beyond OpenAI's own; the openai client sends them through extra_body.
EXTRA_FIELDS = {"top_k", "min_p", "repetition_penalty"}


def complete(client, **params) -> str:
    extra_body = {name: params.pop(name) for name in EXTRA_FIELDS & params.keys()}
    completion = client.completions.create(
        model="demo", prompt=PROMPT, **{"max_tokens": 24, **params}, extra_body=extra_body or None
    )
    return completion.choices[0].text


def stop_from(text: str) -> str:
    """Three characters from the second half of `text` with no U+FFFD (a byte not yet decoded)."""
    for start in range(len(text) // 2, len(text) - 3):
        candidate = text[start : start + 3]
        if "\ufffd" not in candidate and candidate.strip():
            return candidate
    raise AssertionError(f"no usable stop string in {text!r}")


@pytest.fixture(scope="module")
def greedy_text(openai_client) -> str:
    return complete(openai_client, temperature=0)


def test_temperature_zero_is_deterministic(openai_client, greedy_text):
    assert complete(openai_client, temperature=0) == greedy_text
    chat = [
        openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=16, temperature=0)
        for _ in range(2)
    ]
    assert chat[0].choices[0].message.content == chat[1].choices[0].message.content


def test_the_same_seed_gives_the_same_text_and_other_seeds_differ(openai_client, greedy_text):
    first = complete(openai_client, temperature=1, seed=1234)
    again = complete(openai_client, temperature=1, seed=1234)
    others = {complete(openai_client, temperature=1, seed=seed) for seed in (1, 2, 3)}

    assert first == again
    assert first not in others
    assert len(others) == 3
    assert first != greedy_text


def test_a_negative_seed_is_reproducible_too(openai_client):
    assert complete(openai_client, temperature=1, seed=-7) == complete(openai_client, temperature=1, seed=-7)


async def test_a_seed_gives_the_same_text_while_other_requests_share_the_batch(openai_client, async_openai_client):
    alone = complete(openai_client, temperature=1, seed=99, max_tokens=32)

    async def background(seed: int, started: asyncio.Event) -> None:
        stream = await async_openai_client.completions.create(
            model="demo", prompt=f"story number {seed}", max_tokens=300, temperature=1, seed=seed, stream=True
        )
        async for _chunk in stream:
            started.set()

    started = [asyncio.Event() for _ in range(4)]
    others = [asyncio.create_task(background(seed, event)) for seed, event in enumerate(started)]
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), timeout=30)
        shared = await async_openai_client.completions.create(
            model="demo", prompt=PROMPT, max_tokens=32, temperature=1, seed=99
        )
        still_running = sum(not task.done() for task in others)
    finally:
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    assert still_running == 4, "the other requests finished before the seeded one: nothing shared the batch"
    assert shared.choices[0].text == alone


def test_top_k_one_equals_greedy(openai_client, greedy_text):
    assert complete(openai_client, temperature=1, top_k=1, seed=5) == greedy_text


def test_top_k_changes_the_sampled_text(openai_client):
    assert complete(openai_client, temperature=1, top_k=3, seed=5) != complete(openai_client, temperature=1, seed=5)


def test_top_p_changes_the_sampled_text(openai_client):
    assert complete(openai_client, temperature=1, top_p=0.1, seed=5) != complete(openai_client, temperature=1, seed=5)


def test_min_p_changes_the_sampled_text(openai_client):
    # (min_p=1 is not exactly greedy: bfloat16 logits tie often, and min_p keeps every tied token.)
    assert complete(openai_client, temperature=1, seed=5, min_p=0.9) != complete(openai_client, temperature=1, seed=5)


@pytest.mark.parametrize(
    "penalty",
    [{"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"repetition_penalty": 3.0}],
    ids=["presence", "frequency", "repetition"],
)
def test_a_penalty_changes_the_greedy_text(openai_client, greedy_text, penalty):
    assert complete(openai_client, temperature=0, **penalty) != greedy_text


def test_a_logit_bias_of_plus_100_forces_that_token(openai_client, tokenizer):
    word, token_id = next(
        (word, ids[0])
        for word in ("hello", "water", "the", "and", "to")
        if len(ids := tokenizer.encode(word, add_special_tokens=False)) == 1
    )
    completion = openai_client.completions.create(
        model="demo", prompt=PROMPT, max_tokens=5, temperature=1, logit_bias={str(token_id): 100}
    )

    assert completion.choices[0].text == word * 5
    assert completion.usage.completion_tokens == 5


def test_a_text_completion_keeps_the_leading_space_of_its_first_token(openai_client, tokenizer):
    (token_id,) = tokenizer.encode(" the", add_special_tokens=False)
    completion = openai_client.completions.create(
        model="demo", prompt="once upon a time", max_tokens=3, temperature=0, logit_bias={str(token_id): 100}
    )

    assert completion.choices[0].text == " the the the"


def test_a_logit_bias_of_minus_100_bans_the_greedy_token(openai_client, tokenizer):
    first_token_text = complete(openai_client, temperature=0, max_tokens=1)
    (first_token,) = tokenizer.encode(first_token_text, add_special_tokens=False)
    banned = complete(openai_client, temperature=0, max_tokens=1, logit_bias={str(first_token): -100})

    assert banned != first_token_text


def stream_deltas(client, **params) -> tuple[list[str], str | None]:
    stream = client.completions.create(model="demo", prompt=PROMPT, max_tokens=24, temperature=0, stream=True, **params)
    deltas, finish_reason = [], None
    for chunk in stream:
        deltas.append(chunk.choices[0].text)
        finish_reason = chunk.choices[0].finish_reason or finish_reason
    return [delta for delta in deltas if delta], finish_reason


def test_a_stop_string_truncates_the_output_before_it(openai_client, greedy_text):
    # A word from the middle of the greedy text: the output must end right before its first occurrence.
    words = greedy_text.split()
    stop = next(word for word in words[len(words) // 2 :] if "\ufffd" not in word and greedy_text.find(word) > 0)
    expected = greedy_text[: greedy_text.find(stop)]
    completion = openai_client.completions.create(model="demo", prompt=PROMPT, max_tokens=24, temperature=0, stop=stop)

    assert completion.choices[0].text == expected
    assert stop not in completion.choices[0].text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens < 24


def test_a_stop_list_stops_at_the_first_string_that_appears(openai_client, greedy_text):
    stop = stop_from(greedy_text)
    expected = greedy_text[: greedy_text.find(stop)]
    completion = openai_client.completions.create(
        model="demo", prompt=PROMPT, max_tokens=24, temperature=0, stop=["never-in-the-output-#", stop]
    )

    assert completion.choices[0].text == expected
    assert completion.choices[0].finish_reason == "stop"


def test_a_stop_string_that_spans_a_token_boundary_is_never_streamed(openai_client):
    deltas, _ = stream_deltas(openai_client)
    full = "".join(deltas)
    boundaries = [len("".join(deltas[: index + 1])) for index in range(len(deltas) - 1)]
    # Two characters either side of a boundary between stream deltas (each delta is one or more whole tokens),
    # first found at that boundary, so the match can only be made across two tokens.
    stop, cut = next(
        (full[boundary - 2 : boundary + 2], boundary - 2)
        for boundary in boundaries
        if boundary >= 2
        and full.find(full[boundary - 2 : boundary + 2]) == boundary - 2
        and "\ufffd" not in full[boundary - 2 : boundary + 2]
    )
    stopped, finish_reason = stream_deltas(openai_client, stop=stop)

    assert "".join(stopped) == full[:cut]
    assert all(stop not in delta for delta in stopped)
    assert finish_reason == "stop"
    whole = openai_client.completions.create(model="demo", prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop])
    assert whole.choices[0].text == full[:cut]
    assert whole.choices[0].finish_reason == "stop"


def test_a_stop_string_in_a_chat_completion_ends_it_with_finish_reason_stop(openai_client):
    greedy = openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=20, temperature=0)
    text = greedy.choices[0].message.content
    stop = stop_from(text)
    stopped = openai_client.chat.completions.create(
        model="demo", messages=MESSAGES, max_tokens=20, temperature=0, stop=stop
    )

    assert stopped.choices[0].message.content == text[: text.find(stop)]
    assert stopped.choices[0].finish_reason == "stop"
