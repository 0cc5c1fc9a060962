"""``manage.py bench_eval``: what log-probabilities and ``n`` cost inside the shared batch, the engine alone.

The measurement is ``inference.bench.evaluation`` (its docstring says how the runs are arranged); this
command makes the ``small`` model when it is missing and runs the measurement in a process on the hub's
kernel path, as the hub's own engine computes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.bench.common import BenchError
from inference.bench.servers import hub_kernel_env, model_ensure
from mlxhub.kernels import CPU_KERNEL_MODES


class Command(BaseCommand):
    help = (
        "Measure decode speed with logprobs (top 5) vs without at concurrency 1 and 8, and one request with "
        "n: 4 vs 4 separate requests on a 500-token prompt, interleaved, on the small model with the hub's "
        "engine alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        repo = Path(settings.BASE_DIR)
        parser.add_argument(
            "--shared-dir", type=Path, default=repo.parent / "shared", help="Holds bench/make_model.py."
        )
        parser.add_argument(
            "--out-dir", type=Path, default=repo / "bench-out", help="Where the model is made (git-ignored)."
        )
        parser.add_argument("--model-dir", type=Path, default=None, help="Default: OUT_DIR/models/small.")
        parser.add_argument("--rounds", type=int, default=3, help="Measured rounds (one more warms up).")
        parser.add_argument("--c1-tokens", type=int, default=48)
        parser.add_argument("--c8-tokens", type=int, default=32)
        parser.add_argument("--prompt-tokens", type=int, default=500, help="The n: 4 prompt, about.")
        parser.add_argument("--n-tokens", type=int, default=64, help="Tokens per choice for n: 4.")
        parser.add_argument("--kernels", choices=CPU_KERNEL_MODES, default=None, help="The hub's MLXHUB_CPU_KERNELS.")
        parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        make_model = Path(options["shared_dir"]).resolve() / "bench" / "make_model.py"
        model_dir = Path(options["model_dir"] or Path(options["out_dir"]) / "models" / "small").resolve()
        try:
            if not (model_dir / "config.json").is_file() and not make_model.is_file():
                raise BenchError(f"{make_model} not found; pass --shared-dir or --model-dir")
            model_ensure(make_model=make_model, preset="small", model_dir=model_dir, say=self.stdout.write)
            env = hub_kernel_env(options["kernels"])
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        command = [
            sys.executable,
            "-m",
            "inference.bench.evaluation",
            str(model_dir),
            f"--rounds={options['rounds']}",
            f"--c1-tokens={options['c1_tokens']}",
            f"--c8-tokens={options['c8_tokens']}",
            f"--prompt-tokens={options['prompt_tokens']}",
            f"--n-tokens={options['n_tokens']}",
            *(["--json"] if options["json"] else []),
        ]
        self.stdout.write(f"bench_eval: {model_dir}, {options['rounds']} rounds (about a minute each)")
        done = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CommandError(f"the measurement failed:\n{done.stderr[-3000:]}")
        self.stdout.write(done.stdout)
