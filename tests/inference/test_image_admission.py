"""Images are fetched only after a request is admitted to its limits, and only as many as allowed.

The real ASGI application in this process (httpx's ASGI transport), a real vision model, and a local
image server that counts how often it is asked: a key over its rate limit must drive no outbound fetch.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from PIL import Image

from catalog.services import local_model_register, profile_upsert
from inference import runtime
from mlxhub.accounts.models import Role
from mlxhub.accounts.services import api_key_create
from tests.mlxhub.factories import make_user
from tests.model_builders import build_tiny_paligemma

pytestmark = pytest.mark.django_db(transaction=True)


class CountingImageServer:
    def __init__(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (120, 40, 200)).save(buffer, format="PNG")
        body = buffer.getvalue()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                counter.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/picture.png"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def image_server() -> Iterator[CountingImageServer]:
    server = CountingImageServer()
    yield server
    server.server.shutdown()


@pytest.fixture
def vision_profile(tmp_path, settings) -> Iterator[Any]:
    settings.MLXHUB_IMAGE_ALLOW_PRIVATE = True  # the image server is on loopback
    local_model = local_model_register(path=build_tiny_paligemma(tmp_path / "paligemma"))
    yield profile_upsert(name="tiny-vision-admission", local_model=local_model)
    client = runtime._client
    if client is not None and client.started:  # type: ignore[attr-defined]
        async_to_sync(client.unload)(local_model.path, force=True)


@pytest.fixture
def one_per_minute(team: Any) -> str:
    owner = make_user("frank", team=team, role=Role.MEMBER)
    return api_key_create(owner=owner, name="one a minute", team=team, limits={"rpm": 1}).secret


def chat_with_images(model: str, urls: list[str]) -> dict[str, Any]:
    parts = [{"type": "text", "text": "what is it"}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 2}


async def post(secret: str, body: dict[str, Any]) -> httpx.Response:
    from mlxhub.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as client:
        return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})


def test_a_key_over_its_rate_limit_drives_no_image_fetch(vision_profile, one_per_minute, image_server):
    body = chat_with_images(vision_profile.name, [image_server.url])

    first = async_to_sync(post)(one_per_minute, body)
    assert first.status_code == 200, first.text
    assert image_server.hits == 1

    second = async_to_sync(post)(one_per_minute, body)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["param"] == "rpm"
    assert image_server.hits == 1  # refused at admission: the image was never asked for


def test_too_many_images_are_refused_before_any_is_fetched(vision_profile, team, image_server):
    owner = make_user("gina", team=team, role=Role.MEMBER)
    secret = api_key_create(owner=owner, name="plenty", team=team).secret

    response = async_to_sync(post)(secret, chat_with_images(vision_profile.name, [image_server.url] * 9))

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "too_many_images"
    assert image_server.hits == 0


def test_an_image_in_a_data_url_reaches_the_engine_as_its_bytes(vision_profile, team):
    owner = make_user("hugo", team=team, role=Role.MEMBER)
    secret = api_key_create(owner=owner, name="data", team=team).secret
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (1, 2, 3)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    response = async_to_sync(post)(secret, chat_with_images(vision_profile.name, [url]))

    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 0
