"""Prometheus gauges for the catalog: download jobs by state, read from their rows at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from audit.metrics import REGISTRY


class DownloadsCollector(Collector):
    def describe(self) -> list[Any]:
        # Without this the registry calls collect() at registration, i.e. at start-up, before the database exists.
        return []

    def collect(self) -> Iterator[Any]:
        from django.db.models import Count

        from catalog.models import Download

        downloads = GaugeMetricFamily("mlxhub_downloads", "Download jobs by state.", labels=["state"])
        counts = dict(Download.objects.values_list("status").annotate(count=Count("id")).values_list("status", "count"))
        for state in Download.Status.values:
            downloads.add_metric([state], counts.get(state, 0))
        yield downloads


def register() -> None:
    REGISTRY.register(DownloadsCollector())
