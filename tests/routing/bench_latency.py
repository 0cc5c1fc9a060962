"""The routing layer's added latency: (client → MLX Hub → fake upstream) minus (client → fake upstream).

Not collected by pytest (no test_ prefix). Run: .venv/bin/python -m tests.routing.bench_latency [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import start_hub, stop_hub
from tests.routing.fakes import FakeUpstream

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(count: int) -> None:
    fake = FakeUpstream("openai").start()
    hub = start_hub(Path(tempfile.mkdtemp(prefix="routing-bench-")))
    try:
        headers = {"Authorization": f"Bearer {hub.api_key}"}
        with httpx.Client(base_url=hub.base_url, headers=headers, timeout=30) as client:
            credential = client.post("/api/routing/credentials/", json={
                "name": "bench", "provider": "openai-compatible", "base_url": fake.base_url, "secret": "sk-bench-0000",
            }).json()  # fmt: skip
            rule = {"name": "bench", "pattern": "bench", "target_credential": credential["id"], "target_model": "up"}
            assert client.post("/api/routing/rules/", json=rule).status_code == 201
            direct = httpx.Client(base_url=fake.base_url, timeout=30)
            for _ in range(20):  # warm both paths (connection pools, caches)
                client.post("/v1/chat/completions", json={**BODY, "model": "bench"}).raise_for_status()
                direct.post("/chat/completions", json={**BODY, "model": "up"}).raise_for_status()
            differences, via_hub, straight = [], [], []
            for _ in range(count):
                started = time.perf_counter()
                direct.post("/chat/completions", json={**BODY, "model": "up"}).raise_for_status()
                middle = time.perf_counter()
                client.post("/v1/chat/completions", json={**BODY, "model": "bench"}).raise_for_status()
                ended = time.perf_counter()
                straight.append((middle - started) * 1000)
                via_hub.append((ended - middle) * 1000)
                differences.append(via_hub[-1] - straight[-1])
        print(f"{count} non-streaming requests, milliseconds")
        print(f"direct   median {statistics.median(straight):.2f}  p95 {percentile(straight, 0.95):.2f}")
        print(f"via hub  median {statistics.median(via_hub):.2f}  p95 {percentile(via_hub, 0.95):.2f}")
        print(f"added    median {statistics.median(differences):.2f}  p95 {percentile(differences, 0.95):.2f}")
    finally:
        stop_hub(hub)
        fake.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
