"""The measured runs: every contender at every concurrency, interleaved in ABBA rounds with the same prompts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bench.common import BenchError, BenchPlan, Say, fmt
from inference.bench.constants import ENGINE_ALONE, IN_PROCESS
from inference.bench.engine_alone_process import EngineAlone
from inference.bench.in_process import in_process_run
from inference.bench.servers import Server, process_cpu_seconds


@dataclass
class RunResult:
    server: str
    concurrency: int
    round: int
    figures: dict[str, Any]


@dataclass(frozen=True)
class Setup:
    """Where the contenders that are not servers find their model, scripts and kernel environment."""

    repo: Path
    loadgen: Path  # the shared loadgen.py
    model_dir: Path
    hub_env: Mapping[str, str]
    engine_alone: EngineAlone | None  # the resident engine-alone process; None: no engine-alone runs


def contenders(servers: Mapping[str, Server], concurrency: int, *, engine_alone: bool) -> list[str]:
    """A round's running order: the hub between the engine alone and mlx_lm.server, so each ratio's pair runs
    back to back; at concurrency 1 mlx-lm's stream_generate opens the round."""
    order = [ENGINE_ALONE] if engine_alone else []
    order += list(servers)
    return [IN_PROCESS, *order] if concurrency == 1 else order


def load_runs(*, servers: Mapping[str, Server], setup: Setup, plan: BenchPlan, say: Say, warn: Say) -> list[RunResult]:
    results: list[RunResult] = []
    for level_index, concurrency in enumerate(plan.levels):
        order = contenders(servers, concurrency, engine_alone=setup.engine_alone is not None)
        for round_index in range(plan.rounds):
            # The same prompts for every contender in a round, new ones for every round.
            seed = 1000 + 100 * level_index + round_index
            for name in order if round_index % 2 == 0 else order[::-1]:
                if name == IN_PROCESS:
                    figures = in_process_run(
                        repo=setup.repo,
                        hub_env=setup.hub_env,
                        loadgen_dir=setup.loadgen.parent,
                        model_dir=setup.model_dir,
                        seed=seed,
                        plan=plan,
                    )
                elif name == ENGINE_ALONE:
                    assert setup.engine_alone is not None
                    figures = setup.engine_alone.run(concurrency=concurrency, seed=seed, plan=plan)
                else:
                    figures = loadgen_run(
                        servers[name], loadgen=setup.loadgen, concurrency=concurrency, seed=seed, plan=plan
                    )
                if figures["requests_failed"]:
                    warn(f"  {name}: {figures['requests_failed']} requests failed: {figures.get('errors')}")
                results.append(RunResult(name, concurrency, round_index, figures))
                say(
                    f"  c={concurrency} round {round_index + 1} {name:<14} "
                    f"{fmt(figures['output_tokens_per_s'])} tok/s  ttft p50 {fmt(figures['ttft_p50_s'])}s "
                    f"p95 {fmt(figures['ttft_p95_s'])}s  ({figures['requests_ok']} ok, "
                    f"{figures['requests_failed']} failed, {fmt(figures['wall_s'], 1)}s)"
                )
    return results


def loadgen_run(server: Server, *, loadgen: Path, concurrency: int, seed: int, plan: BenchPlan) -> dict[str, Any]:
    """One loadgen.py run against a server, with the server process's CPU seconds over it."""
    command = [
        sys.executable,
        str(loadgen),
        "--base-url",
        server.base_url,
        "-c",
        str(concurrency),
        "-r",
        str(plan.requests),
        "--prompt-words",
        str(plan.prompt_words),
        "--max-tokens",
        str(plan.max_tokens),
        "--warmup",
        str(plan.warmup),
        "--seed",
        str(seed),
        "--timeout",
        str(plan.timeout),
        "--label",
        server.name,
    ]
    if server.model:
        command += ["--model", server.model]
    if server.api_key:
        command += ["--api-key", server.api_key]
    budget = plan.timeout * (plan.requests + plan.warmup + 1) + 60
    cpu_before = process_cpu_seconds(server.process.pid)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"loadgen against {server.name} ran past {budget:.0f}s") from exc
    cpu_after = process_cpu_seconds(server.process.pid)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"loadgen against {server.name} printed no result:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    # Includes the warm-up request, which both servers get alike.
    figures["server_cpu_s"] = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return figures
