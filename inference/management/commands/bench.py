"""``manage.py bench``: MLX Hub against mlx_lm.server on the same local model, interleaved.

The parts live in ``inference.bench`` (its docstring says how the runs are arranged); this
command parses the arguments, reads the hub's engine settings and calls them in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.bench.common import BenchError, BenchPlan
from inference.bench.engine_alone_process import EngineAlone, engine_alone_running
from inference.bench.prefix import prefix_check
from inference.bench.report import conditions_now, report_build
from inference.bench.runs import Setup, load_runs
from inference.bench.servers import hub_kernel_env, model_ensure, server_kernels, servers_running
from inference.runtime import engine_config
from mlxhub.kernels import CPU_KERNEL_MODES


def hub_engine_config() -> dict[str, Any]:
    """The EngineConfig values the hub's own engine gets from these settings, but its kernel path: the
    engine-alone process finds its own, from the environment it is started with (as the hub does)."""
    values = dataclasses.asdict(engine_config())
    values.pop("kernels")
    return values


class Command(BaseCommand):
    help = (
        "Start MLX Hub and mlx_lm.server on the same small model and run the shared loadgen.py "
        "against both, interleaved with the hub's engine alone (no web tier); print output tokens/s, "
        "TTFT, the hub / mlx_lm.server ratios and the web tier's share."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        repo = Path(settings.BASE_DIR)
        parser.add_argument(
            "--shared-dir",
            type=Path,
            default=repo.parent / "shared",
            help="Folder holding bench/loadgen.py and bench/make_model.py (default: ../shared).",
        )
        parser.add_argument(
            "--out-dir",
            type=Path,
            default=repo / "bench-out",
            help="Logs, the throw-away hub data folder and the default model folder (git-ignored).",
        )
        parser.add_argument(
            "--model-dir",
            type=Path,
            default=None,
            help="Model folder; made with make_model.py when missing (default: OUT_DIR/models/PRESET).",
        )
        parser.add_argument("--preset", default="small", help="make_model.py preset (default: small).")
        parser.add_argument("--concurrency", default="1,4,8", help="Comma-separated client counts.")
        parser.add_argument("--requests", type=int, default=2, help="Measured requests per client and run.")
        parser.add_argument("--max-tokens", type=int, default=128)
        parser.add_argument("--prompt-words", type=int, default=80)
        parser.add_argument("--rounds", type=int, default=2, help="Interleaved hub / mlx_lm.server pairs per level.")
        parser.add_argument("--warmup", type=int, default=1, help="Unmeasured requests before each run.")
        parser.add_argument(
            "--prefix-words",
            type=int,
            default=900,
            help="Words in the prefix-cache check's long prompt (about 1,000 tokens); 0 skips the check.",
        )
        parser.add_argument("--timeout", type=float, default=600.0, help="Per request, seconds.")
        parser.add_argument("--skip-mlx-lm", action="store_true", help="Measure the hub alone (no ratios).")
        parser.add_argument(
            "--skip-engine-alone",
            action="store_true",
            help="No engine-alone runs (the hub's engine driven in-process, without the web tier).",
        )
        parser.add_argument(
            "--kernels",
            choices=CPU_KERNEL_MODES,
            default=None,
            help="The hub's MLXHUB_CPU_KERNELS (default: as in this environment, else auto); "
            "mlx_lm.server always runs stock.",
        )
        parser.add_argument("--json-out", type=Path, default=None, help="Also write the JSON result here.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._bench(options)
        except BenchError as exc:
            raise CommandError(str(exc)) from exc

    def _bench(self, options: dict[str, Any]) -> None:
        shared_bench = Path(options["shared_dir"]).resolve() / "bench"
        loadgen = shared_bench / "loadgen.py"
        make_model = shared_bench / "make_model.py"
        for script in (loadgen, make_model):
            if not script.is_file():
                raise CommandError(f"{script} not found; pass --shared-dir")
        plan = self._plan(options)
        out_dir = Path(options["out_dir"]).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        model_dir = Path(options["model_dir"] or out_dir / "models" / options["preset"]).resolve()
        model_ensure(make_model=make_model, preset=options["preset"], model_dir=model_dir, say=self.stdout.write)

        conditions = conditions_now("start")
        self.stdout.write(
            f"bench: model {model_dir}, concurrency {plan.levels}, {plan.requests} requests/client, "
            f"max_tokens {plan.max_tokens}, prompt {plan.prompt_words} words, "
            f"{plan.rounds} rounds; load average {conditions['loadavg_start']} on {os.cpu_count()} CPUs"
        )
        started = time.perf_counter()
        repo = Path(settings.BASE_DIR)
        hub_env = hub_kernel_env(options["kernels"])
        engine_alone: AbstractContextManager[EngineAlone | None] = nullcontext()
        if not options["skip_engine_alone"]:
            engine_alone = engine_alone_running(
                repo=repo,
                hub_env=hub_env,
                loadgen_dir=loadgen.parent,
                model_dir=model_dir,
                engine_config=hub_engine_config(),
                log_path=out_dir / "logs" / "engine_alone.log",
            )
        with (
            servers_running(
                repo=repo,
                model_dir=model_dir,
                out_dir=out_dir,
                hub_env=hub_env,
                with_mlx=not options["skip_mlx_lm"],
                say=self.stdout.write,
            ) as servers,
            engine_alone as alone,
        ):
            if alone is not None:
                self.stdout.write(f"bench: engine-alone in process {alone.process.pid}, model loaded")
            setup = Setup(repo=repo, loadgen=loadgen, model_dir=model_dir, hub_env=hub_env, engine_alone=alone)
            results = load_runs(servers=servers, setup=setup, plan=plan, say=self.stdout.write, warn=self.stderr.write)
            kernels = server_kernels(servers, model_dir)
            prefix = {}
            if options["prefix_words"] > 0:
                prefix = prefix_check(
                    servers=servers,
                    loadgen_dir=loadgen.parent,
                    words=options["prefix_words"],
                    timeout=plan.timeout,
                    say=self.stdout.write,
                )
        conditions.update(conditions_now("end"))
        conditions["duration_s"] = round(time.perf_counter() - started, 1)
        report = report_build(
            results=results,
            prefix=prefix,
            plan=plan,
            model_dir=model_dir,
            conditions=conditions,
            kernels=kernels,
            say=self.stdout.write,
        )
        line = json.dumps(report, separators=(",", ":"))
        self.stdout.write(line)
        if options["json_out"]:
            Path(options["json_out"]).write_text(line + "\n")

    @staticmethod
    def _plan(options: dict[str, Any]) -> BenchPlan:
        try:
            levels = [int(part) for part in str(options["concurrency"]).split(",") if part.strip()]
        except ValueError as exc:
            raise CommandError("--concurrency takes comma-separated integers, e.g. 1,4,8") from exc
        if not levels or min(levels) < 1 or options["requests"] < 1 or options["rounds"] < 1:
            raise CommandError("need concurrency >= 1, --requests >= 1 and --rounds >= 1")
        return BenchPlan(
            levels=levels,
            concurrency=options["concurrency"],
            requests=options["requests"],
            max_tokens=options["max_tokens"],
            prompt_words=options["prompt_words"],
            rounds=options["rounds"],
            warmup=options["warmup"],
            timeout=options["timeout"],
        )
