"""The shape of the engine-alone benchmark commands (``bench_constrained``, ``bench_eval``): make the ``small``
model when it is missing, then run a measurement module in a process on the hub's kernel path, as the hub's
own engine computes, and print its table."""

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


class EngineBenchCommand(BaseCommand):
    name: str  # the command's, for the line printed before the run
    module: str  # the measurement, run as ``python -m MODULE MODEL_DIR --rounds=… --c1-tokens=… …``
    default_rounds: int
    round_time: str  # for the line printed before the run: "a few seconds each"
    extra_options: tuple[tuple[str, int, str], ...] = ()  # (option, default, help) passed on as they are

    def add_arguments(self, parser: CommandParser) -> None:
        repo = Path(settings.BASE_DIR)
        parser.add_argument(
            "--shared-dir", type=Path, default=repo.parent / "shared", help="Holds bench/make_model.py."
        )
        parser.add_argument(
            "--out-dir", type=Path, default=repo / "bench-out", help="Where the model is made (git-ignored)."
        )
        parser.add_argument("--model-dir", type=Path, default=None, help="Default: OUT_DIR/models/small.")
        parser.add_argument(
            "--rounds", type=int, default=self.default_rounds, help="Measured rounds (one more warms up)."
        )
        parser.add_argument("--c1-tokens", type=int, default=48)
        parser.add_argument("--c8-tokens", type=int, default=32)
        for option, default, text in self.extra_options:
            parser.add_argument(option, type=int, default=default, help=text)
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
        passed = ["--c1-tokens", "--c8-tokens", *(option for option, _, _ in self.extra_options)]
        command = [
            sys.executable,
            "-m",
            self.module,
            str(model_dir),
            f"--rounds={options['rounds']}",
            *(f"{option}={options[option[2:].replace('-', '_')]}" for option in passed),
            *(["--json"] if options["json"] else []),
        ]
        self.stdout.write(f"{self.name}: {model_dir}, {options['rounds']} rounds ({self.round_time})")
        done = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CommandError(f"the measurement failed:\n{done.stderr[-3000:]}")
        self.stdout.write(done.stdout)
