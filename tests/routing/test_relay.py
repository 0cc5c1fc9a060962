"""The relay to upstreams: its proxy from the environment (as httpx read it, once per upstream), and its
splitting of server-sent events into lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing.backends import _proxy


@pytest.fixture(autouse=True)
def fresh_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    _proxy.cache_clear()
    yield
    _proxy.cache_clear()


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

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ClientSession() as session, session.post(f"http://127.0.0.1:{port}/") as response:
            events = [event async for event in _sse_events(response)]
    finally:
        await runner.cleanup()
    assert events == [("first", long_data), ("message", "one\ntwo"), ("message", "[DONE]")]
