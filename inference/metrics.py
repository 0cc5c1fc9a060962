"""Prometheus metrics of the data plane: counters moved per request, the engine's gauges read at scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from asgiref.sync import async_to_sync
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from audit.metrics import LATENCY_BUCKETS, REGISTRY

requests_total = Counter(
    "mlxhub_requests_total", "Data-plane requests.", ["endpoint", "model", "backend", "status"], registry=REGISTRY
)
tokens_total = Counter(
    "mlxhub_tokens_total", "Tokens in (prompt) and out (completion).", ["direction", "model"], registry=REGISTRY
)
ttft_seconds = Histogram(
    "mlxhub_time_to_first_token_seconds",
    "Time to first token.",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
latency_seconds = Histogram(
    "mlxhub_request_latency_seconds",
    "Whole-request latency.",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


class EngineCollector(Collector):
    """Queue depth, running batch size and loaded models, read from the engine client at scrape time."""

    def describe(self) -> list[Any]:
        # Without this the registry calls collect() at registration, i.e. at start-up, before the engine exists.
        return []

    def collect(self) -> Iterator[Any]:
        from inference.runtime import engine_client

        waiting = GaugeMetricFamily("mlxhub_queue_depth", "Requests waiting to join the batch.", labels=["model"])
        running = GaugeMetricFamily("mlxhub_batch_size", "Sequences decoding in the batch.", labels=["model"])
        loaded = GaugeMetricFamily("mlxhub_models_loaded", "Models loaded in this process.")
        memory = GaugeMetricFamily("mlxhub_model_weights_bytes", "Bytes of a loaded model's weights.", labels=["model"])
        cache = GaugeMetricFamily("mlxhub_prefix_cache_bytes", "Bytes held by the prefix cache.")
        stats = async_to_sync(engine_client().stats)()
        for key, model in stats.models.items():
            waiting.add_metric([key], model.waiting)
            running.add_metric([key], model.decoding)
            memory.add_metric([key], model.weights_bytes)
        loaded.add_metric([], sum(1 for model in stats.models.values() if model.state == "loaded"))
        cache.add_metric([], stats.memory.prefix_cache_bytes)
        yield from (waiting, running, loaded, memory, cache)


def register() -> None:
    REGISTRY.register(EngineCollector())


def request_observe(
    *,
    endpoint: str,
    model: str,
    backend: str,
    status: int,
    prompt_tokens: int,
    completion_tokens: int,
    latency: float,
    ttft: float | None,
) -> None:
    requests_total.labels(endpoint, model, backend, str(status)).inc()
    if prompt_tokens:
        tokens_total.labels("in", model).inc(prompt_tokens)
    if completion_tokens:
        tokens_total.labels("out", model).inc(completion_tokens)
    latency_seconds.labels(endpoint, model).observe(latency)
    if ttft is not None:
        ttft_seconds.labels(endpoint, model).observe(ttft)
