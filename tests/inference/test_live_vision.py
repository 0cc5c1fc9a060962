"""Chat with images (vision models through mlx-vlm) with the official openai client, on a tiny PaliGemma."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from PIL import Image

from tests.model_builders import PALIGEMMA_IMAGE_TOKENS

pytestmark = pytest.mark.live


def png_data_url(color: tuple[int, int, int] = (200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_image(url: str, text: str = "describe the picture") -> list[dict[str, object]]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A local web server with a PNG: the server must refuse to fetch it (loopback is off limits)."""
    body = base64.b64decode(png_data_url().split(",", 1)[1])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/picture.png"
    server.shutdown()


def test_a_data_url_image_streams_like_text_and_counts_its_image_tokens(openai_client, vision_model):
    chunks = list(
        openai_client.chat.completions.create(
            model=vision_model,
            messages=with_image(png_data_url()),
            max_tokens=5,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage.completion_tokens == 5
    text_only = openai_client.chat.completions.create(
        model=vision_model, messages=[{"role": "user", "content": "describe the picture"}], max_tokens=1
    )
    assert usage.prompt_tokens - text_only.usage.prompt_tokens >= PALIGEMMA_IMAGE_TOKENS


def test_greedy_answers_about_the_same_image_are_the_same_and_non_streaming_works(openai_client, vision_model):
    answers = [
        openai_client.chat.completions.create(
            model=vision_model, messages=with_image(png_data_url()), max_tokens=6, temperature=0
        )
        for _ in range(2)
    ]

    assert answers[0].choices[0].message.content == answers[1].choices[0].message.content
    assert answers[0].choices[0].finish_reason == "length"
    assert answers[0].usage.completion_tokens == 6


def test_a_url_on_a_loopback_address_is_refused_before_any_fetch(openai_client, vision_model, image_server):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=vision_model, messages=with_image(image_server), max_tokens=2)

    assert caught.value.code == "invalid_image"
    assert caught.value.body["param"] == "messages[0].content[1].image_url.url"


@pytest.mark.parametrize(
    "url",
    [
        "data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode(),
        "data:image/png;base64,not-base64!!",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_unsupported_or_unsafe_images_are_400s(openai_client, vision_model, url):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=vision_model, messages=with_image(url), max_tokens=2)

    assert caught.value.code == "invalid_image"


def test_an_image_sent_to_a_text_model_is_a_400_naming_the_part(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="demo", messages=with_image(png_data_url()), max_tokens=2)

    assert caught.value.body["param"] == "messages[0].content[1]"


def test_text_completions_to_a_vision_model_is_a_400_saying_so(openai_client, vision_model):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model=vision_model, prompt="hello", max_tokens=2)

    assert caught.value.code == "wrong_model_kind"


def test_an_anthropic_client_sends_an_image_block_to_a_local_vision_model(live_hub, vision_model):
    import anthropic

    claude = anthropic.Anthropic(base_url=live_hub.base_url, api_key=live_hub.api_key, max_retries=0, timeout=60)
    image = {"type": "base64", "media_type": "image/png", "data": png_data_url().split(",", 1)[1]}
    content = [{"type": "text", "text": "what is this?"}, {"type": "image", "source": image}]

    # Greedy (anthropic 2.14 takes temperature in the body only): sampling may pick end-of-text now and then.
    with claude.messages.stream(
        model=vision_model, max_tokens=4, messages=[{"role": "user", "content": content}], extra_body={"temperature": 0}
    ) as stream:
        message = stream.get_final_message()

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert message.usage.input_tokens >= PALIGEMMA_IMAGE_TOKENS


def test_anthropic_count_tokens_counts_the_images_of_a_vision_model(live_hub, vision_model):
    import anthropic

    claude = anthropic.Anthropic(base_url=live_hub.base_url, api_key=live_hub.api_key, max_retries=0, timeout=60)
    image = {"type": "base64", "media_type": "image/png", "data": png_data_url().split(",", 1)[1]}
    one = [{"role": "user", "content": [{"type": "image", "source": image}, {"type": "text", "text": "what is this?"}]}]
    text_only = [{"role": "user", "content": "what is this?"}]

    counted = claude.messages.count_tokens(model=vision_model, messages=one).input_tokens  # type: ignore[arg-type]
    answered = claude.messages.create(model=vision_model, max_tokens=1, messages=one)  # type: ignore[arg-type]

    assert counted == answered.usage.input_tokens + (answered.usage.cache_read_input_tokens or 0)
    without = claude.messages.count_tokens(model=vision_model, messages=text_only).input_tokens  # type: ignore[arg-type]
    assert counted - without >= PALIGEMMA_IMAGE_TOKENS


@pytest.mark.parametrize(
    ("fields", "param"), [({"n": 2}, "n"), ({"logprobs": True}, "logprobs")], ids=["n", "logprobs"]
)
def test_a_vision_model_refuses_what_its_runtime_cannot_make(openai_client, vision_model, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=vision_model, messages=[{"role": "user", "content": "describe"}], max_tokens=1, **fields
        )
    assert caught.value.param == param
