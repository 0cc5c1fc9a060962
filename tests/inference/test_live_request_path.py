"""The holes closed in the /v1 request path, each against the live server.

Unknown URLs, chat-template refusals, stop-string caps, bodies over the limit with and without a
Content-Length, what /v1/engine shows to whom, and requests that share a client's x-request-id.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveHub
from tests.inference.test_live_errors import assert_openai_error
from tests.inference.wire import sse_chunks

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "hello there"}]


# ---- unknown URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_an_unknown_v1_url_is_a_404_unknown_url_for_every_method(http, method):
    # /v1/responses does not exist yet: a POST to it used to be the CSRF middleware's 403.
    response = http.request(method, "/v1/responses", json={"model": "demo", "input": "hello"})

    error = assert_openai_error(response, status=404)
    assert error["code"] == "unknown_url"
    assert "/v1/responses" in error["message"]


# ---- a chat template that refuses the messages ---------------------------------------------------------------

REFUSING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ message['content'] }}"
    "{% endfor %}"
)


@pytest.fixture(scope="module")
def no_system_model(live_hub: LiveHub, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the demo model whose chat template refuses system messages, as Gemma's does."""
    folder = Path(shutil.copytree(demo_model_dir, tmp_path_factory.mktemp("no-system") / "model"))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = REFUSING_TEMPLATE
    config_path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    live_hub.manage("register_model", str(folder), "--name", "no-system")
    return "no-system"


def test_a_chat_template_that_refuses_the_messages_is_a_400_naming_the_cause(http, no_system_model):
    body = {
        "model": no_system_model,
        "messages": [{"role": "system", "content": "be brief"}, *MESSAGES],
        "max_tokens": 2,
    }
    for stream in (False, True):
        error = assert_openai_error(
            http.post("/v1/chat/completions", json={**body, "stream": stream}), status=400, param="messages"
        )
        assert "System role not supported" in error["message"]
    # Without the system message the same model answers.
    answer = http.post("/v1/chat/completions", json={**body, "messages": MESSAGES})
    assert answer.status_code == 200, answer.text


def test_the_anthropic_endpoint_reports_a_template_refusal_in_its_own_shape(http, no_system_model):
    body = {"model": no_system_model, "system": "be brief", "messages": MESSAGES, "max_tokens": 2}
    response = http.post("/v1/messages", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "System role not supported" in response.json()["error"]["message"]


# ---- stop strings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop",
    [["x" * 257], ["y" * 200] * 6],
    ids=["one-too-long", "too-long-in-all"],
)
def test_stop_strings_are_capped_each_and_in_all(http, stop):
    response = http.post("/v1/chat/completions", json={"model": "demo", "messages": MESSAGES, "stop": stop})

    error = assert_openai_error(response, status=400, param="stop")
    assert "characters" in error["message"]


def test_anthropic_stop_sequences_are_capped_too(http):
    body = {"model": "demo", "messages": MESSAGES, "max_tokens": 2, "stop_sequences": ["z" * 300]}
    response = http.post("/v1/messages", json=body)

    assert response.status_code == 400, response.text
    assert "stop_sequences" in response.json()["error"]["message"]


# ---- bodies over the limit ------------------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_is_a_413_without_being_read_whole(live_hub, http):
    limit = 8 * 1024 * 1024  # MLXHUB_MAX_BODY_BYTES's default
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"model": "demo", "prompt": "'
        for _ in range(64):  # 16 MiB, twice the limit, in 256 KiB pieces
            sent += 256 * 1024
            yield b"a" * (256 * 1024)
        yield b'"}'

    # A generator body has no length: httpx sends it with Transfer-Encoding: chunked.
    with httpx.Client(base_url=live_hub.base_url, timeout=60) as client:
        try:
            response = client.post("/v1/completions", content=chunks(), headers=http.headers)
        except httpx.HTTPError:  # the server may close the connection while the rest is still being sent
            pytest.fail("the server must answer the 413 before it closes the connection")
    error = assert_openai_error(response, status=413)
    assert error["code"] == "request_too_large"
    assert str(limit) in error["message"]


def test_a_chunked_body_within_the_limit_is_served(live_hub, http):
    body = json.dumps({"model": "demo", "prompt": "hello", "max_tokens": 2}).encode()

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    with httpx.Client(base_url=live_hub.base_url, timeout=60) as client:
        response = client.post("/v1/completions", content=chunks(), headers=http.headers)

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "length"


# ---- what /v1/engine shows to whom ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def member_key(live_hub: LiveHub) -> str:
    """A key of a team member (not an admin), allowed the demo model only."""
    script = (
        "from django.contrib.auth.models import User\n"
        "from mlxhub.accounts.models import Membership, Team\n"
        "from mlxhub.accounts.services import api_key_create\n"
        "team, _ = Team.objects.get_or_create(name='Engine viewers', slug='engine-viewers')\n"
        "user = User.objects.create_user('erin-engine')\n"
        "Membership.objects.create(team=team, user=user, role='member')\n"
        "print(api_key_create(owner=user, name='demo only', team=team, allowed_models=['demo']).secret)\n"
    )
    return live_hub.manage("shell", "-c", script).stdout.strip().splitlines()[-1]


def test_the_engine_page_shows_a_member_only_its_models_without_paths_or_raw_errors(live_hub, http, member_key):
    http.post("/v1/completions", json={"model": "demo", "prompt": "hello", "max_tokens": 1}).raise_for_status()
    with httpx.Client(base_url=live_hub.base_url, headers={"Authorization": f"Bearer {member_key}"}) as client:
        seen = client.get("/v1/engine").json()
    admin = http.get("/v1/engine").json()

    assert list(seen["models"]) == ["demo"]
    assert "path" not in seen["models"]["demo"] and "last_error" not in seen["models"]["demo"]
    assert seen["models"]["demo"]["state"] == "loaded"
    assert not any(str(live_hub.home) in json.dumps(value) for value in seen.values())
    # The admin's key sees every model, with its folder.
    assert set(admin["models"]) > {"demo"}
    assert admin["models"]["demo"]["path"].startswith(str(live_hub.home))


# ---- two requests with one x-request-id ---------------------------------------------------------------------------


async def _pair(live_hub: LiveHub, path: str, body: dict, request_id: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {live_hub.api_key}", "x-request-id": request_id}
    async with httpx.AsyncClient(base_url=live_hub.base_url, headers=headers, timeout=120) as client:
        return list(await asyncio.gather(*(client.post(path, json=body) for _ in range(2))))


def _kinds(vision_model: str, minilm_model: str) -> list[tuple[str, str, dict]]:
    chat = {"messages": MESSAGES, "max_tokens": 6, "temperature": 0}
    image = {"type": "image_url", "image_url": {"url": _png()}}
    vision = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what"}, image]}], "max_tokens": 4}
    return [
        ("text", "/v1/chat/completions", {"model": "demo", **chat}),
        ("text-stream", "/v1/chat/completions", {"model": "demo", **chat, "stream": True}),
        ("vision", "/v1/chat/completions", {"model": vision_model, **vision}),
        ("vision-stream", "/v1/chat/completions", {"model": vision_model, **vision, "stream": True}),
        ("embedding", "/v1/embeddings", {"model": minilm_model, "input": ["one sentence", "another one"]}),
    ]


def _png() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _complete(kind: str, response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    if kind.endswith("stream"):
        chunks = sse_chunks(response.text)
        return any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])
    if kind == "embedding":
        return len(response.json()["data"]) == 2
    return response.json()["choices"][0]["finish_reason"] in ("length", "stop")


def test_two_requests_sharing_an_x_request_id_both_complete_on_every_kind_of_model(
    live_hub, vision_model, minilm_model
):
    for kind, path, body in _kinds(vision_model, minilm_model):
        for round_ in range(3):  # enough pairs to have filled a vision model's queue when its slots leaked
            responses = asyncio.run(_pair(live_hub, path, body, request_id=f"shared-{kind}-{round_}"))
            assert [_complete(kind, response) for response in responses] == [True, True], [r.text for r in responses]
            assert all(response.headers["x-request-id"] == f"shared-{kind}-{round_}" for response in responses)
    engine = httpx.get(f"{live_hub.base_url}/v1/engine", headers={"Authorization": f"Bearer {live_hub.api_key}"}).json()
    assert all(model["in_flight"] == 0 for model in engine["models"].values()), engine


def test_a_disconnect_ends_only_its_own_request_when_another_shares_its_x_request_id(live_hub, tokenizer):
    headers = {"Authorization": f"Bearer {live_hub.api_key}", "x-request-id": "one-id-two-clients"}
    never_ends = {str(tokenizer.eos_token_id): -100}  # random weights pick end-of-text now and then
    body = {
        "model": "demo",
        "prompt": "a long story",
        "max_tokens": 1500,
        "temperature": 0,
        "stream": True,
        "logit_bias": never_ends,
    }

    async def run() -> list[dict]:
        async with (
            httpx.AsyncClient(base_url=live_hub.base_url, headers=headers, timeout=120) as leaving,
            httpx.AsyncClient(base_url=live_hub.base_url, headers=headers, timeout=120) as staying,
            staying.stream("POST", "/v1/completions", json=body) as kept,
        ):
            async with leaving.stream("POST", "/v1/completions", json=body) as left:
                lines = left.aiter_lines()
                while not (await anext(lines)).startswith("data: "):
                    pass
            # The first client has gone; the second must still get all of its tokens.
            return [json.loads(line[6:]) async for line in kept.aiter_lines() if line.startswith("data: {")]

    chunks = asyncio.run(run())
    reasons = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"] if choice["finish_reason"]]
    assert reasons == ["length"]
    assert sum(1 for chunk in chunks for choice in chunk["choices"] if choice["text"]) > 100


# ---- images: how many, and how many pixels in all ----------------------------------------------------------------


def _png_of(width: int, height: int) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (width, height), 0).save(buffer, format="PNG")  # one bit per pixel: a small file
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _with_images(model: str, urls: list[str]) -> dict:
    parts = [{"type": "text", "text": "compare"}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 2}


def test_more_images_than_allowed_are_refused_naming_the_first_one_over(http, vision_model):
    response = http.post("/v1/chat/completions", json=_with_images(vision_model, [_png()] * 9))

    error = assert_openai_error(response, status=400, param="messages[0].content[9].image_url.url")
    assert error["code"] == "too_many_images"
    assert "at most 8" in error["message"]


def test_images_over_the_total_pixel_cap_are_refused_though_each_alone_fits(http, vision_model):
    big = _png_of(6000, 6000)  # 36 megapixels: under the 40 per image, 72 in two
    alone = http.post("/v1/chat/completions", json=_with_images(vision_model, [big]))
    assert alone.status_code == 200, alone.text

    response = http.post("/v1/chat/completions", json=_with_images(vision_model, [big, big]))

    error = assert_openai_error(response, status=400, param="messages[0].content[2].image_url.url")
    assert "pixels" in error["message"]
