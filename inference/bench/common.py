"""What every part of the benchmark shares: its plan, its error, figures' formatting, fresh processes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Where a part prints its progress lines (the command's stdout or stderr).
Say = Callable[[str], None]


class BenchError(Exception):
    """A step of the benchmark failed; the command shows it as a CommandError."""


@dataclass(frozen=True)
class BenchPlan:
    """What every run of every contender does: the command line's figures."""

    levels: list[int]
    concurrency: str  # as given on the command line, reported as given
    requests: int  # measured requests per client and run
    max_tokens: int
    prompt_words: int
    rounds: int
    warmup: int  # unmeasured requests before each run
    timeout: float  # per request, seconds

    def report_settings(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "max_tokens": self.max_tokens,
            "prompt_words": self.prompt_words,
            "rounds": self.rounds,
            "warmup": self.warmup,
        }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def loadgen_module(loadgen_dir: Path) -> ModuleType:
    """The shared loadgen.py as a module: its prompts and percentiles are the ones every contender uses."""
    spec = importlib.util.spec_from_file_location("loadgen", loadgen_dir / "loadgen.py")
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot import {loadgen_dir / 'loadgen.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def json_process(command: list[str], *, env: Mapping[str, str], cwd: Path, budget: float, what: str) -> dict[str, Any]:
    """Run a contender's fresh process and return the JSON object its last stdout line holds."""
    try:
        done = subprocess.run(
            command, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=budget, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} took more than {budget:.0f}s") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def figures_table(heading: str, figures: list[dict[str, Any]], *, measured: str, digits: int) -> str:
    """The engine-alone benches' table: each figure's ratio (median and quartiles over rounds), what was
    measured and its baseline (``digits`` after the point, in the figure's unit), and the goal."""
    lines = [
        heading,
        "",
        f"| measure | ratio: median [quartiles] | {measured} | baseline | goal |",
        "|---|---|---|---|---|",
    ]
    for row in figures:
        lines.append(
            f"| {row['label']} | **{row['median']:.3f}** [{row['low']:.3f}-{row['high']:.3f}] "
            f"| {row['measured']:.{digits}f} {row['unit']} | {row['baseline']:.{digits}f} {row['unit']} "
            f"| {row['goal']} |"
        )
    return "\n".join(lines)
