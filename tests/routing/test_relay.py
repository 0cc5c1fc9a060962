"""The relay to upstreams: its proxy from the environment (as httpx read it, once per upstream), its
splitting of server-sent events into lines, and how many attempts a call makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from routing.backends import _proxy


@pytest.fixture(autouse=True)
def fresh_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    _proxy.cache_clear()
    yield
    _proxy.cache_clear()


@asynccontextmanager
async def serving(path: str, handler: Any) -> AsyncIterator[int]:
    """A real aiohttp server answering POSTs to ``path`` with ``handler``, on a free port (yielded)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def test_an_https_upstream_goes_through_https_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://other.internal:8080")
    assert _proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert _proxy("http://vllm.internal:8000/v1") == "http://other.internal:8080"


def test_no_proxy_and_no_setting_mean_a_direct_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _proxy("https://api.anthropic.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    _proxy.cache_clear()
    assert _proxy("https://llm.corp.example/v1") is None
    assert _proxy("https://localhost:8443/v1") is None
    assert _proxy("https://api.anthropic.com") == "http://proxy.internal:3128"


async def test_events_are_split_whatever_the_chunks_and_line_ends() -> None:
    from aiohttp import ClientSession, web

    from routing.backends import _sse_events

    long_data = "x" * 300_000
    body = (f"event: first\r\ndata: {long_data}\r\n\r\ndata: one\ndata: two\n\ndata: [DONE]").encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, len(body), 997):  # pieces that cut lines, line ends and the CRLFs anywhere
            await response.write(body[start : start + 997])
        return response

    async with (
        serving("/", handler) as port,
        ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/") as response,
    ):
        events = [event async for event in _sse_events(response)]
    assert events == [("first", long_data), ("message", "one\ntwo"), ("message", "[DONE]")]


@pytest.mark.parametrize(("answers", "calls", "outcome"), [
    (["500"] * 5, 3, 500),  # retryable every time: exactly the configured attempts, then the last failure
    (["500", "200"], 2, 200),  # one retry, then the answer
    (["400", "200"], 1, 400),  # the request was at fault: not retried
])  # fmt: skip
async def test_an_upstream_call_makes_exactly_the_attempts_its_failures_call_for(
    settings: Any, answers: list[str], calls: int, outcome: int
) -> None:
    """The first attempt runs without tenacity; a retryable failure hands the rest to it, counted from 1."""
    from aiohttp import web

    from mlxhub import crypto
    from routing.backends import UpstreamError, _clients, breakers_reset, upstream_call
    from routing.selectors import CredentialTarget

    settings.MLXHUB_ROUTING_RETRY_ATTEMPTS = 3
    settings.MLXHUB_ROUTING_RETRY_INITIAL_SECONDS = 0.001
    settings.MLXHUB_ROUTING_RETRY_MAX_SECONDS = 0.002
    settings.MLXHUB_ROUTING_BREAKER_FAILURES = 10
    breakers_reset()
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        answer = answers[len(seen)]
        seen.append(answer)
        if answer == "200":
            return web.json_response({"id": "chatcmpl-1", "choices": []})
        return web.json_response({"error": {"message": "no", "type": "x"}}, status=int(answer))

    secret = crypto.encrypt("sk-test")
    try:
        async with serving("/v1/chat/completions", handler) as port:
            url = f"http://127.0.0.1:{port}/v1"
            credential = CredentialTarget(
                id=9001, name="counted", provider="openai-compatible", base_url=url, encrypted_secret=secret
            )
            try:
                body = {"model": "m", "messages": []}
                answer = await upstream_call(credential, body, path="/chat/completions", stream=False)
                status = 200
                assert answer == {"id": "chatcmpl-1", "choices": []}
            except UpstreamError as exc:
                status = exc.status
    finally:
        client = _clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
        breakers_reset()
    assert (len(seen), status) == (calls, outcome)
