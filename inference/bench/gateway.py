"""What MLX Hub adds to a request it routes to a cloud upstream: direct vs through the hub, interleaved.

A local OpenAI-shaped upstream answers instantly (a chat completion, or a short stream); each
measured pair sends the same request to it directly and through MLX Hub (a routing rule to a
credential on it), in alternating order, on kept-alive connections. The added time of a pair is the
hub's time minus the direct one; p50 and p95 are taken over the pairs. Streaming requests are timed
to their first byte of body.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from inference.bench.common import BenchError

BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
STREAM_PIECES = ("Hello", " from", " the", " upstream")
UPSTREAM_MODEL = "upstream-model"
ROUTED_NAME = "bench-cloud"


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


def _stream() -> bytes:
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": UPSTREAM_MODEL,
         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in STREAM_PIECES
    ]  # fmt: skip
    chunks.append(
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": UPSTREAM_MODEL, "choices": [],
         "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    )  # fmt: skip
    return b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"


class FakeUpstream:
    """An OpenAI-shaped upstream that answers at once, on keep-alive connections."""

    def __init__(self) -> None:
        completion, stream = _completion(), _stream()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer and no Nagle: delayed ACKs would add 40 ms to every request.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                payload, kind = (
                    (stream, "text/event-stream") if body.get("stream") else (completion, "application/json")
                )
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @contextmanager
    def running(self) -> Iterator[FakeUpstream]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()


def route_to(hub_url: str, api_key: str, upstream_url: str) -> None:
    """A credential on the upstream and a rule sending ROUTED_NAME to it (idempotent for a reused hub)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=hub_url, headers=headers, timeout=30) as client:
        for rule in client.get("/api/routing/rules/").json().get("results", []):
            if rule["name"] == ROUTED_NAME:
                client.delete(f"/api/routing/rules/{rule['id']}/").raise_for_status()
        for credential in client.get("/api/routing/credentials/").json().get("results", []):
            if credential["name"] == ROUTED_NAME:
                client.delete(f"/api/routing/credentials/{credential['id']}/").raise_for_status()
        credential = client.post(
            "/api/routing/credentials/",
            json={"name": ROUTED_NAME, "provider": "openai-compatible", "base_url": upstream_url, "secret": "sk-0000"},
        )
        if credential.status_code != 201:
            raise BenchError(f"could not add the credential: {credential.status_code} {credential.text}")
        rule = {"name": ROUTED_NAME, "pattern": ROUTED_NAME, "target_credential": credential.json()["id"],
                "target_model": UPSTREAM_MODEL}  # fmt: skip
        answer = client.post("/api/routing/rules/", json=rule)
        if answer.status_code != 201:
            raise BenchError(f"could not add the rule: {answer.status_code} {answer.text}")


def _whole(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    client.post(path, json=body).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _first_byte(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        response.raise_for_status()
        chunks = response.iter_raw()
        next(chunks)
        elapsed = (time.perf_counter() - started) * 1000
        for _ in chunks:  # the rest, so the connection is reused
            pass
    return elapsed


@dataclass
class Series:
    direct: list[float]
    hub: list[float]

    def figures(self) -> dict[str, float]:
        added = [via - straight for via, straight in zip(self.hub, self.direct, strict=True)]
        return {
            "direct_p50_ms": _round(statistics.median(self.direct)),
            "direct_p95_ms": _round(percentile(self.direct, 0.95)),
            "hub_p50_ms": _round(statistics.median(self.hub)),
            "hub_p95_ms": _round(percentile(self.hub, 0.95)),
            "added_p50_ms": _round(statistics.median(added)),
            "added_p95_ms": _round(percentile(added, 0.95)),
        }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _round(value: float) -> float:
    return round(value, 3)


def measure(*, hub_url: str, api_key: str, upstream_url: str, requests: int, warmup: int) -> dict[str, Any]:
    """Interleaved pairs for non-streamed requests and for streamed ones' first byte."""
    hub = httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    direct = httpx.Client(base_url=upstream_url, headers={"Authorization": "Bearer sk-0000"}, timeout=30)
    via_body, direct_body = {**BODY, "model": ROUTED_NAME}, {**BODY, "model": UPSTREAM_MODEL}
    results: dict[str, Any] = {}
    timers: dict[str, Callable[[httpx.Client, str, dict[str, Any]], float]] = {
        "non_streaming": _whole,
        "streaming_first_byte": _first_byte,
    }
    with hub, direct:
        for name, timer in timers.items():
            for _ in range(warmup):  # connection pools, caches, the rule and key lookups
                timer(hub, "/v1/chat/completions", via_body)
                timer(direct, "/chat/completions", direct_body)
            series = Series(direct=[], hub=[])
            for index in range(requests):
                # Alternating order, so neither side always runs on a warmer machine.
                order = ("direct", "hub") if index % 2 == 0 else ("hub", "direct")
                for side in order:
                    if side == "direct":
                        series.direct.append(timer(direct, "/chat/completions", direct_body))
                    else:
                        series.hub.append(timer(hub, "/v1/chat/completions", via_body))
            results[name] = {"requests": requests, **series.figures()}
    return results
