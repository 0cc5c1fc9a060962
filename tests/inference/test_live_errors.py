"""Refusals on /v1: OpenAI-shaped, naming the field, with a request id that leads to the server log; never a 500."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.inference.wire import logged

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "hello there"}]


def assert_openai_error(response: httpx.Response, *, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return error


# ---- fields MLX Hub does not honour are refused, never ignored ----------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),  # a call asked for, and no tools to call
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),  # OpenAI's limit is 20
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
        ({"n": 17}, "n"),  # at most 16 choices
    ],
    ids=["tool_choice", "top_logprobs_21", "top_logprobs_alone", "n_17"],
)
def test_an_unsupported_chat_field_is_a_400_naming_it(openai_client, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2, **fields)

    assert caught.value.status_code == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "end"}, "suffix"),
        ({"logprobs": 21}, "logprobs"),
        ({"n": 17}, "n"),
        ({"best_of": 2, "n": 3}, "best_of"),  # fewer made than returned
        ({"best_of": 3, "stream": True}, "best_of"),  # the best are known only at the end
        ({"max_tokens": 0}, "max_tokens"),  # 0 scores a prompt, with echo only
    ],
    ids=["suffix", "logprobs_21", "n_17", "best_of_below_n", "best_of_streamed", "max_tokens_0"],
)
def test_an_unsupported_completion_field_is_a_400_naming_it(openai_client, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(**{"model": "demo", "prompt": "hello", "max_tokens": 2, **fields})

    assert caught.value.param == param


def test_an_unknown_field_is_accepted_and_logged_once_by_name(live_hub, openai_client):
    for _ in range(2):
        answer = openai_client.chat.completions.create(
            model="demo", messages=MESSAGES, max_tokens=2, extra_body={"frobnicate": True}
        )
        assert answer.choices[0].finish_reason in ("length", "stop")

    lines = [line for line in live_hub.log().splitlines() if "frobnicate" in line]
    assert len(lines) == 1 and "unknown field" in lines[0]


def test_max_tokens_and_max_completion_tokens_that_disagree_are_a_400(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2, max_completion_tokens=3)

    assert caught.value.param == "max_completion_tokens"


# ---- unknown models, keys, bodies ----------------------------------------------------------------------------


def test_an_unknown_model_is_a_404_model_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        openai_client.completions.create(model="no-such-model", prompt="hi", max_tokens=2, stream=True)


def test_a_wrong_api_key_is_a_401(live_hub):
    client = openai.OpenAI(base_url=f"{live_hub.base_url}/v1", api_key="mlxh-not-a-real-key", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_a_missing_api_key_is_a_401(live_hub):
    for path in ("/v1/models", "/v1/engine"):
        response = httpx.get(f"{live_hub.base_url}{path}")
        assert assert_openai_error(response, status=401)["code"] == "missing_api_key"
    response = httpx.post(f"{live_hub.base_url}/v1/chat/completions", json={"model": "demo", "messages": MESSAGES})
    assert assert_openai_error(response, status=401)["type"] == "authentication_error"


def test_malformed_json_is_a_400(http):
    response = http.post("/v1/chat/completions", content=b'{"model": "demo", "messages": [', headers=json_headers())

    assert "JSON" in assert_openai_error(response, status=400)["message"]


def test_an_empty_body_is_a_400(http):
    response = http.post("/v1/chat/completions", content=b"", headers=json_headers())

    assert assert_openai_error(response, status=400)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": "five"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "robot", "content": "beep"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"stop": 5}, "stop"),
        ({"stream": [1]}, "stream"),
        ({"stream_options": {"include_usage": "sometimes"}}, "stream_options.include_usage"),
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"seed": 2**70}, "seed"),
        ({"model": 7}, "model"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_field_of_the_wrong_type_is_a_400_naming_it(http, fields, param):
    body = {"model": "demo", "messages": MESSAGES, "max_tokens": 2, **fields}
    response = http.post("/v1/chat/completions", json=body)

    assert_openai_error(response, status=400, param=param)


def json_headers() -> dict[str, str]:
    return {"content-type": "application/json"}


# ---- context length -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def too_long_prompt(tokenizer) -> str:
    prompt = " ".join(["the old man and the sea"] * 500)
    assert len(tokenizer.encode(prompt)) > 2048  # the tiny model's context
    return prompt


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_prompt_longer_than_the_context_is_a_400_context_length_exceeded(openai_client, too_long_prompt, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": too_long_prompt}], max_tokens=2, stream=stream
        )

    assert caught.value.code == "context_length_exceeded"
    assert "2048" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model="demo", prompt=too_long_prompt, max_tokens=2, stream=stream)
    assert caught.value.code == "context_length_exceeded"


def test_max_tokens_beyond_the_context_is_a_400_context_length_exceeded(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model="demo", prompt="hello", max_tokens=2048)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "max_tokens"


# ---- request ids ---------------------------------------------------------------------------------------------

ERRORS = {
    "malformed-json": ("POST", "/v1/chat/completions", b"{nope", True),
    "empty-body": ("POST", "/v1/chat/completions", b"", True),
    "validation": ("POST", "/v1/chat/completions", json.dumps({"model": "demo", "messages": []}).encode(), True),
    "refused-field": (
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "demo", "messages": [{"role": "user", "content": "x"}], "prediction": {}}).encode(),
        True,
    ),
    "unsupported": (
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "demo", "messages": MESSAGES, "n": 17}).encode(),
        True,
    ),
    "unknown-model": ("POST", "/v1/completions", json.dumps({"model": "nope", "prompt": "x"}).encode(), True),
    "retrieve-unknown": ("GET", "/v1/models/nope", None, True),
    "missing-key": ("GET", "/v1/models", None, False),
    "context": (
        "POST",
        "/v1/completions",
        json.dumps({"model": "demo", "prompt": "x", "max_tokens": 9999}).encode(),
        True,
    ),
}
UNLOGGED = {
    "unknown-url": ("GET", "/v1/no-such-endpoint", None, True),
    "wrong-method": ("GET", "/v1/chat/completions", None, True),
}


def send(live_hub, method: str, path: str, body: bytes | None, with_key: bool, **headers: str) -> httpx.Response:
    if with_key:
        headers["Authorization"] = f"Bearer {live_hub.api_key}"
    if body is not None:
        headers["content-type"] = "application/json"
    return httpx.request(method, f"{live_hub.base_url}{path}", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "body", "with_key"), ERRORS.values(), ids=list(ERRORS))
def test_every_error_carries_a_request_id_that_is_in_the_server_log(live_hub, method, path, body, with_key):
    response = send(live_hub, method, path, body, with_key)

    assert 400 <= response.status_code < 500
    assert "error" in response.json()
    request_id = response.headers["x-request-id"]
    assert logged(live_hub, request_id=request_id)


@pytest.mark.parametrize(("method", "path", "body", "with_key"), UNLOGGED.values(), ids=list(UNLOGGED))
def test_an_error_from_outside_the_api_also_leaves_its_request_id_in_the_log(live_hub, method, path, body, with_key):
    response = send(live_hub, method, path, body, with_key)

    assert 400 <= response.status_code < 500
    assert "error" in response.json()
    request_id = response.headers["x-request-id"]
    assert logged(live_hub, request_id=request_id, timeout=2)


def test_a_clients_own_request_id_is_echoed_and_logged(live_hub):
    response = send(live_hub, *ERRORS["unknown-model"], **{"x-request-id": "client-trace-0042"})

    assert response.headers["x-request-id"] == "client-trace-0042"
    messages = logged(live_hub, request_id="client-trace-0042", contains="request refused")
    assert any(message.startswith("request refused: 404 model_not_found") for message in messages)


# ---- nothing a client sends is a 500 ------------------------------------------------------------------------

WEIRD_BODIES = {
    "json-array": b"[1, 2, 3]",
    "json-null": b"null",
    "json-string": b'"hello"',
    "json-number": b"42",
    "empty-object": b"{}",
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "not-utf8": b'{"model": "demo\xff\xfe", "messages": []}',
    "huge-model-name": json.dumps({"model": "m" * 100_000, "messages": MESSAGES, "max_tokens": 2}).encode(),
    "huge-user": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": 2, "user": "u" * 100_000}).encode(),
    "huge-stop": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": 2, "stop": "s" * 100_000}).encode(),
    "huge-content": json.dumps(
        {"model": "demo", "messages": [{"role": "user", "content": "word " * 200_000}]}
    ).encode(),
    "negative-max-tokens": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": -5}).encode(),
    "zero-max-tokens": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": 0}).encode(),
    "max-tokens-string": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": "3"}).encode(),
    "max-tokens-huge": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": 10**30}).encode(),
    "empty-messages": json.dumps({"model": "demo", "messages": [], "max_tokens": 2}).encode(),
    "null-message": json.dumps({"model": "demo", "messages": [None], "max_tokens": 2}).encode(),
    "text-parts": json.dumps(
        {"model": "demo", "max_tokens": 2, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    ).encode(),
    "image-part": json.dumps(
        {
            "model": "demo",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
        }
    ).encode(),
    "lone-surrogate-content": json.dumps(
        {"model": "demo", "messages": [{"role": "user", "content": "a\ud800b"}], "max_tokens": 2}
    ).encode(),
    "lone-surrogate-stop": json.dumps(
        {"model": "demo", "messages": MESSAGES, "max_tokens": 2, "stop": ["\udfff"]}
    ).encode(),
    "nul-character": json.dumps(
        {"model": "demo", "messages": [{"role": "user", "content": "a\x00b"}], "max_tokens": 2}
    ).encode(),
    "nan-temperature": b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "infinite-bias": b'{"model": "demo", "messages": [], "logit_bias": {"5": -Infinity}}',
    "negative-seed": json.dumps(
        {"model": "demo", "messages": MESSAGES, "max_tokens": 2, "seed": -1, "temperature": 1}
    ).encode(),
    "huge-seed": json.dumps(
        {"model": "demo", "messages": MESSAGES, "max_tokens": 2, "seed": 2**64 - 1, "temperature": 1}
    ).encode(),
    "too-huge-seed": json.dumps({"model": "demo", "messages": MESSAGES, "max_tokens": 2, "seed": 2**64}).encode(),
    "seventeen-stops": json.dumps(
        {"model": "demo", "messages": MESSAGES, "max_tokens": 2, "stop": ["a"] * 17}
    ).encode(),
    "tool-message": json.dumps(
        {"model": "demo", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}], "max_tokens": 2}
    ).encode(),
}
WEIRD_COMPLETION_BODIES = {
    "empty-prompt": {"model": "demo", "prompt": "", "max_tokens": 2},
    "empty-prompt-list": {"model": "demo", "prompt": [], "max_tokens": 2},
    "empty-token-list": {"model": "demo", "prompt": [[]], "max_tokens": 2},
    "token-outside-vocabulary": {"model": "demo", "prompt": [10**9], "max_tokens": 2},
    "negative-token": {"model": "demo", "prompt": [-1], "max_tokens": 2},
    "mixed-prompt": {"model": "demo", "prompt": ["a", 1], "max_tokens": 2},
    "an-empty-prompt-of-two": {"model": "demo", "prompt": ["a", ""], "max_tokens": 2},
    "too-many-prompts": {"model": "demo", "prompt": ["a"] * 65, "max_tokens": 2},
    "lone-surrogate-prompt": {"model": "demo", "prompt": "\ud800", "max_tokens": 2},
}


@pytest.mark.parametrize("body", WEIRD_BODIES.values(), ids=list(WEIRD_BODIES))
def test_no_chat_body_is_a_server_error(http, body):
    response = http.post("/v1/chat/completions", content=body, headers=json_headers())

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_openai_error(response, status=response.status_code, param=response.json()["error"]["param"])
    else:
        assert response.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("body", WEIRD_COMPLETION_BODIES.values(), ids=list(WEIRD_COMPLETION_BODIES))
def test_no_completion_body_is_a_server_error(http, body):
    # json.dumps escapes non-ASCII (httpx's json= would not, and cannot encode a lone surrogate).
    response = http.post("/v1/completions", content=json.dumps(body).encode(), headers=json_headers())

    assert response.status_code == 400, response.text
    assert_openai_error(response, status=400, param="prompt")


def test_a_lone_surrogate_is_refused_naming_its_field(http):
    body = {"model": "demo", "messages": [{"role": "user", "content": "a\ud800"}], "max_tokens": 2}

    response = http.post("/v1/chat/completions", content=json.dumps(body).encode(), headers=json_headers())

    assert_openai_error(response, status=400, param="messages[0].content")


def test_a_body_over_the_size_limit_is_a_413(http):
    body = {"model": "demo", "messages": [{"role": "user", "content": "x" * 9_000_000}]}

    assert_openai_error(http.post("/v1/chat/completions", json=body), status=413)


def test_a_top_k_larger_than_the_vocabulary_is_not_a_server_error(openai_client, http):
    body = {"model": "demo", "prompt": "hello", "max_tokens": 2, "temperature": 1, "top_k": 100_000}
    response = http.post("/v1/completions", json=body)

    assert response.status_code < 500, response.text


def test_a_logit_bias_outside_the_vocabulary_is_a_400_naming_logit_bias(http):
    body = {"model": "demo", "prompt": "hello", "max_tokens": 2, "logit_bias": {"1000000": 5}}

    assert_openai_error(http.post("/v1/completions", json=body), status=400, param="logit_bias")
