"""The relay's proxy comes from the environment, as httpx read it, looked up once per upstream."""

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
