"""``manage.py bench_gateway``: the latency MLX Hub adds to a request routed to a cloud upstream."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.bench.common import BenchError
from inference.bench.gateway import FakeUpstream, measure, route_to
from inference.bench.servers import Server, server_stop, server_wait_ready, start_hub
from mlxhub.kernels import engine_process_env


@contextmanager
def hub_running(home: Path) -> Iterator[Server]:
    """A hub of its own (the embedded default, the tiny demo model), as `manage.py serve` runs its web process."""
    server = start_hub(
        repo=Path(settings.BASE_DIR), home=home, log_path=home / "hub.log", hub_env=engine_process_env(dict(os.environ))
    )
    try:
        server_wait_ready(server)
        yield server
    finally:
        server_stop(server)


class Command(BaseCommand):
    help = (
        "Measure the latency MLX Hub adds to requests it routes to an OpenAI-shaped upstream: direct vs "
        "through the hub, interleaved pairs, p50/p95 of the difference, non-streamed and time to first byte."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=300, help="Measured pairs per kind (default 300).")
        parser.add_argument("--warmup", type=int, default=30)
        parser.add_argument("--hub-url", default="", help="Measure a running hub instead of starting one.")
        parser.add_argument("--api-key", default="", help="An admin's key of the running hub (with --hub-url).")
        parser.add_argument("--json-out", type=Path, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["hub_url"] and not options["api_key"]:
            raise CommandError("--hub-url needs --api-key (an admin's key: the bench adds a credential and a rule)")
        try:
            with FakeUpstream().running() as upstream:
                if options["hub_url"]:
                    result = self._run(options["hub_url"], options["api_key"], upstream.base_url, options)
                else:
                    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as home, hub_running(Path(home)) as hub:
                        assert hub.api_key is not None
                        result = self._run(hub.base_url, hub.api_key, upstream.base_url, options)
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        for kind, figures in result.items():
            self.stdout.write(
                f"{kind:22} direct p50 {figures['direct_p50_ms']:7.2f} p95 {figures['direct_p95_ms']:7.2f} | "
                f"hub p50 {figures['hub_p50_ms']:7.2f} p95 {figures['hub_p95_ms']:7.2f} | "
                f"added p50 {figures['added_p50_ms']:6.2f} p95 {figures['added_p95_ms']:6.2f} ms"
            )
        line = json.dumps(result, separators=(",", ":"))
        self.stdout.write(line)
        if options["json_out"]:
            Path(options["json_out"]).write_text(line + "\n")

    def _run(self, hub_url: str, api_key: str, upstream_url: str, options: dict[str, Any]) -> dict[str, Any]:
        route_to(hub_url, api_key, upstream_url)
        return measure(
            hub_url=hub_url,
            api_key=api_key,
            upstream_url=upstream_url,
            requests=options["requests"],
            warmup=options["warmup"],
        )
