"""The one Prometheus registry that /metrics serves; each app registers what it measures on it.

The ground floor: this module imports nothing above it. ``inference.metrics`` (requests, tokens,
latency, the engine's gauges) and ``catalog.metrics`` (downloads) add their own families here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
