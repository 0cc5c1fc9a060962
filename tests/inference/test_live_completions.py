"""Chat and text completions against the live server: bodies, SSE wire format and usage, as OpenAI sends them."""

from __future__ import annotations

import uuid

import pytest

from tests.inference.wire import logged, sse_chunks

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "hello there, how are you today"}]


def unique_messages() -> list[dict[str, str]]:
    """A prompt no earlier request has sent, so nothing of it sits in the prefix cache."""
    return [{"role": "user", "content": f"tell me about the river {uuid.uuid4().hex}"}]


def chat_prompt_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer.encode(rendered, add_special_tokens=False))


def test_a_chat_completion_has_openais_shape_and_exact_usage(openai_client, tokenizer):
    messages = unique_messages()
    completion = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=7, temperature=0)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "demo"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"  # the random model never emits EOS
    usage = completion.usage
    assert usage.prompt_tokens == chat_prompt_tokens(tokenizer, messages)
    assert usage.completion_tokens == 7
    assert usage.total_tokens == usage.prompt_tokens + 7
    assert usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens


def test_a_text_completion_has_openais_shape_and_exact_usage(openai_client, tokenizer):
    prompt = f"the water of the river {uuid.uuid4().hex}"
    completion = openai_client.completions.create(model="demo", prompt=prompt, max_tokens=6, temperature=0)

    assert completion.id.startswith("cmpl-")
    assert completion.object == "text_completion"
    assert completion.model == "demo"
    assert completion.choices[0].text
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens == len(tokenizer.encode(prompt))
    assert completion.usage.completion_tokens == 6
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 6


def test_a_prompt_given_as_token_ids_is_counted_as_sent(openai_client, tokenizer):
    prompt_ids = tokenizer.encode("the sun and the sea")
    completion = openai_client.completions.create(model="demo", prompt=prompt_ids, max_tokens=3, temperature=0)

    assert completion.usage.prompt_tokens == len(prompt_ids)
    assert completion.usage.completion_tokens == 3


def test_a_chat_stream_is_framed_exactly_like_openais(http, tokenizer):
    messages = unique_messages()
    body = {"model": "demo", "messages": messages, "max_tokens": 5, "temperature": 0, "stream": True}
    response = http.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    chunks = sse_chunks(response.text)
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == "demo" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)  # only with stream_options.include_usage
    first, *content, finish = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] is None
    assert content, "no content deltas"
    for chunk in content:
        assert list(chunk["choices"][0]["delta"]) == ["content"]
        assert chunk["choices"][0]["delta"]["content"]
        assert chunk["choices"][0]["finish_reason"] is None
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]


def test_a_chat_stream_with_include_usage_ends_with_a_usage_chunk(http, tokenizer):
    messages = unique_messages()
    body = {
        "model": "demo",
        "messages": messages,
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(http.post("/v1/chat/completions", json=body).text)

    *choice_chunks, usage_chunk = chunks
    assert all(chunk["usage"] is None for chunk in choice_chunks)
    assert choice_chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == []
    assert usage_chunk["id"] == choice_chunks[0]["id"]
    assert usage_chunk["usage"]["prompt_tokens"] == chat_prompt_tokens(tokenizer, messages)
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 4


def test_a_completion_stream_is_framed_exactly_like_openais(http, tokenizer):
    prompt = f"a song of the sea {uuid.uuid4().hex}"
    body = {
        "model": "demo",
        "prompt": prompt,
        "max_tokens": 5,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse_chunks(http.post("/v1/completions", json=body).text)

    *choice_chunks, usage_chunk = chunks
    assert all(chunk["object"] == "text_completion" and chunk["usage"] is None for chunk in choice_chunks)
    *content, finish = choice_chunks
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in content)
    assert "".join(chunk["choices"][0]["text"] for chunk in content)
    assert finish["choices"][0]["finish_reason"] == "length"
    assert finish["choices"][0]["text"] == ""
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == len(tokenizer.encode(prompt))
    assert usage_chunk["usage"]["completion_tokens"] == 5


def test_the_openai_client_streams_a_chat_completion_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="demo",
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finish_reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish_reasons[-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6
    greedy = openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=6, temperature=0)
    assert text == greedy.choices[0].message.content


def test_the_openai_client_streams_a_text_completion(openai_client):
    stream = openai_client.completions.create(
        model="demo", prompt="the old man and the sea", max_tokens=6, temperature=0, stream=True
    )
    chunks = list(stream)

    text = "".join(chunk.choices[0].text for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    whole = openai_client.completions.create(
        model="demo", prompt="the old man and the sea", max_tokens=6, temperature=0
    )
    assert text == whole.choices[0].text


def test_a_repeated_prompt_reuses_the_prefix_cache(openai_client):
    messages = unique_messages()
    first = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=4, temperature=0)
    again = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=4, temperature=0)

    # The first may reuse a little (the chat template's opening is shared with every earlier prompt).
    assert again.usage.prompt_tokens_details.cached_tokens > first.usage.prompt_tokens_details.cached_tokens
    assert again.usage.prompt_tokens_details.cached_tokens >= again.usage.prompt_tokens - 1
    assert again.choices[0].message.content == first.choices[0].message.content


def test_a_conversation_that_grows_reuses_the_prefix_cache(openai_client):
    messages = unique_messages()
    first = openai_client.chat.completions.create(model="demo", messages=messages, max_tokens=4, temperature=0)
    grown = [
        *messages,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "and then what happened"},
    ]
    second = openai_client.chat.completions.create(model="demo", messages=grown, max_tokens=4, temperature=0)

    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1


def test_max_tokens_and_max_completion_tokens_both_bound_the_completion(openai_client):
    by_max_tokens = openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=3, temperature=0)
    by_max_completion = openai_client.chat.completions.create(
        model="demo", messages=MESSAGES, max_completion_tokens=9, temperature=0
    )

    assert by_max_tokens.usage.completion_tokens == 3
    assert by_max_completion.usage.completion_tokens == 9
    assert by_max_completion.choices[0].finish_reason == "length"


def test_a_chat_message_may_be_a_list_of_text_parts(openai_client):
    parts = [{"type": "text", "text": "hello there,"}, {"type": "text", "text": " how are you today"}]
    as_parts = openai_client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": parts}], max_tokens=5, temperature=0
    )
    as_text = openai_client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "hello there, how are you today"}],
        max_tokens=5,
        temperature=0,
    )

    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content


def test_the_user_field_is_accepted_and_logged(openai_client, live_hub):
    user = f"alice-{uuid.uuid4().hex[:8]}"
    completion = openai_client.chat.completions.with_raw_response.create(
        model="demo", messages=MESSAGES, max_tokens=2, temperature=0, user=user
    )

    assert completion.parse().usage.completion_tokens == 2
    messages = logged(live_hub, request_id=completion.headers["x-request-id"], contains=f"user={user}")
    assert f"chat completion model=demo stream=False user={user}" in messages
