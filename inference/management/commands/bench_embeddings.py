"""Embeddings throughput against a running server: N short inputs in one request vs N requests of one input.

    python manage.py bench_embeddings --base-url http://127.0.0.1:8000 --api-key mlxh-… --model minilm

Every input is a different sentence, and the runs alternate (one request, N requests, …) so the
machine's load falls on both alike; the ratio of the medians is the figure.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser


def sentences(count: int, round_number: int) -> list[str]:
    return [f"Sentence {index} of round {round_number} is about topic {index * 7 % 31}." for index in range(count)]


async def one_request(client: httpx.AsyncClient, model: str, inputs: list[str]) -> float:
    started = time.perf_counter()
    response = await client.post("/v1/embeddings", json={"model": model, "input": inputs, "encoding_format": "base64"})
    if response.status_code != 200:
        raise CommandError(f"/v1/embeddings answered {response.status_code}: {response.text[:300]}")
    return time.perf_counter() - started


async def many_requests(client: httpx.AsyncClient, model: str, inputs: list[str], concurrency: int) -> float:
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def send(text: str) -> None:
        async with gate:
            await one_request(client, model, [text])

    await asyncio.gather(*(send(text) for text in inputs))
    return time.perf_counter() - started


class Command(BaseCommand):
    help = "Embeddings throughput: N inputs in one request vs N one-input requests, through a running server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", required=True)
        parser.add_argument("--api-key", required=True)
        parser.add_argument("--model", required=True)
        parser.add_argument("--inputs", type=int, default=256)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument(
            "--concurrency", type=int, nargs="+", default=[1, 16], help="client concurrency for the one-input requests"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run(**options))

    async def _run(self, **options: Any) -> None:
        headers = {"Authorization": f"Bearer {options['api_key']}"}
        limits = httpx.Limits(max_connections=max(options["concurrency"]) + 1)
        async with httpx.AsyncClient(
            base_url=options["base_url"], headers=headers, timeout=600, limits=limits
        ) as client:
            await one_request(client, options["model"], ["warm up"])  # loads the model outside the timings
            batched: list[float] = []
            single: dict[int, list[float]] = {c: [] for c in options["concurrency"]}
            for round_number in range(options["rounds"]):
                inputs = sentences(options["inputs"], round_number)
                batched.append(await one_request(client, options["model"], inputs))
                for concurrency in options["concurrency"]:
                    many = sentences(options["inputs"], 1000 * (concurrency + 1) + round_number)
                    single[concurrency].append(await many_requests(client, options["model"], many, concurrency))
        n = options["inputs"]
        one = statistics.median(batched)
        self.stdout.write(f"{n} inputs in one request: {one:.3f} s median ({n / one:.0f} inputs/s)")
        for concurrency, times in single.items():
            median = statistics.median(times)
            self.stdout.write(
                f"{n} one-input requests, {concurrency} at a time: {median:.3f} s median ({n / median:.0f} inputs/s)"
                f" -> one request is {median / one:.1f}x faster"
            )
