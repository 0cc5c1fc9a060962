"""Prometheus metrics (prometheus_client): counters moved per request, engine gauges read at scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

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
    """Queue depth, running batch size and loaded models, read from the engine at scrape time."""

    def describe(self) -> list[Any]:
        # Without this the registry calls collect() at registration, i.e. at import, before the database exists.
        return []

    def collect(self) -> Iterator[Any]:
        from inference.runtime import engine_client, engine_started

        waiting = GaugeMetricFamily("mlxhub_queue_depth", "Requests waiting to join the batch.", labels=["model"])
        running = GaugeMetricFamily("mlxhub_batch_size", "Sequences decoding in the batch.", labels=["model"])
        loaded = GaugeMetricFamily("mlxhub_models_loaded", "Models loaded in this process.")
        memory = GaugeMetricFamily("mlxhub_model_weights_bytes", "Bytes of a loaded model's weights.", labels=["model"])
        cache = GaugeMetricFamily("mlxhub_prefix_cache_bytes", "Bytes held by the prefix cache.")
        models = engine_client().stats().get("models", {}) if engine_started() else {}
        for key, stats in models.items():
            waiting.add_metric([key], stats.get("waiting", 0))
            running.add_metric([key], stats.get("decoding", 0))
            memory.add_metric([key], stats.get("weights_bytes", 0))
        loaded.add_metric([], len(models))
        cache.add_metric([], max((stats.get("prefix_cache_bytes", 0) for stats in models.values()), default=0))
        yield from (waiting, running, loaded, memory, cache)
        yield self._downloads()

    @staticmethod
    def _downloads() -> GaugeMetricFamily:
        from django.db.models import Count

        from catalog.models import Download

        downloads = GaugeMetricFamily("mlxhub_downloads", "Download jobs by state.", labels=["state"])
        counts = dict(Download.objects.values_list("status").annotate(count=Count("id")).values_list("status", "count"))
        for state in Download.Status.values:
            downloads.add_metric([state], counts.get(state, 0))
        return downloads


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
