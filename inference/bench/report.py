"""The benchmark's summary: one row per contender and concurrency, the ratios, the targets, the JSON result."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.bench.common import BenchPlan, Say, fmt, ratio, rounded
from inference.bench.constants import (
    ENGINE_ALONE,
    HUB,
    IN_PROCESS,
    MLX,
    TARGET_OPTIMIZED_TOKS_RATIO,
    TARGET_OPTIMIZED_TTFT_P50_RATIO,
    TARGET_PREFIX_SPEEDUP,
    TARGET_TOKS_RATIO,
    TARGET_TTFT_CONCURRENCY,
    TARGET_TTFT_P95_RATIO,
    TARGET_WEB_SHARE,
)
from inference.bench.runs import RunResult

ROW_ORDER = (HUB, MLX, IN_PROCESS, ENGINE_ALONE)
ROUND_KEYS = ("output_tokens_per_s", "ttft_p50_s", "ttft_p95_s", "wall_s", "server_cpu_s")
Verdict = tuple[str, bool]


@dataclass
class Summary:
    server: str
    concurrency: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        wall = sum(run["wall_s"] or 0 for run in self.runs)
        tokens = sum(run["output_tokens"] or 0 for run in self.runs)
        return tokens / wall if wall > 0 else None

    @property
    def cpu_ms_per_token(self) -> float | None:
        """Server CPU milliseconds per measured output token (warm-up CPU included)."""
        if any(run.get("server_cpu_s") is None for run in self.runs):
            return None
        tokens = sum(run["output_tokens"] or 0 for run in self.runs)
        return 1000 * sum(run["server_cpu_s"] for run in self.runs) / tokens if tokens else None

    def mean_of(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if run.get(key) is not None]
        return statistics.fmean(values) if values else None


Summaries = Mapping[tuple[str, int], Summary]


def summaries_of(results: Iterable[RunResult]) -> dict[tuple[str, int], Summary]:
    summaries: dict[tuple[str, int], Summary] = {}
    for result in results:
        key = (result.server, result.concurrency)
        summaries.setdefault(key, Summary(result.server, result.concurrency)).runs.append(result.figures)
    return summaries


def conditions_now(when: str) -> dict[str, Any]:
    return {f"loadavg_{when}": [round(value, 2) for value in os.getloadavg()], "cpus": os.cpu_count()}


def kernel_label(kernel: Mapping[str, Any] | None) -> str:
    if not kernel or not kernel.get("kernel_path"):
        return "-"
    blas = f"/{kernel['blas']}" if kernel.get("blas") else ""
    return f"{kernel['kernel_path']}{blas} {kernel.get('weights_dtype') or '?'}"


def per_round(first: Summary, second: Summary) -> list[float]:
    """Each round's tok/s ratio: pairs run back to back, so the spread shows how much the machine's load moved them."""
    pairs = zip(first.runs, second.runs, strict=False)
    values = (ratio(a["output_tokens_per_s"], b["output_tokens_per_s"]) for a, b in pairs)
    return [round(value, 3) for value in values if value is not None]


def report_build(
    *,
    results: list[RunResult],
    prefix: dict[str, Any],
    plan: BenchPlan,
    model_dir: Path,
    conditions: dict[str, Any],
    kernels: dict[str, dict[str, Any]],
    say: Say,
) -> dict[str, Any]:
    """Print the table, the ratios and the verdicts; return the JSON result."""
    summaries = summaries_of(results)
    kernels = dict(kernels)
    engine_kernel = next((result.figures.get("kernel") for result in results if result.server == ENGINE_ALONE), None)
    if engine_kernel:
        kernels[ENGINE_ALONE] = engine_kernel  # its own engine's stats, measured in its own process
    say("")
    rows = table_rows(summaries, plan.levels, kernels, say)
    optimized = (kernels.get(HUB) or {}).get("kernel_path") == "optimized"
    ratios, verdicts = mlx_ratios(summaries, plan.levels, optimized=optimized, say=say)
    web, web_verdicts = web_tier(summaries, say)
    engine_alone = engine_alone_shares(summaries, plan.levels, say)
    verdicts += web_verdicts
    if HUB in prefix:
        verdicts.append(
            (f"hub prefix reuse >= {TARGET_PREFIX_SPEEDUP}x", prefix[HUB]["speedup"] >= TARGET_PREFIX_SPEEDUP)
        )
    if verdicts:
        say("")
        for label, passed in verdicts:
            say(f"  {'PASS' if passed else 'FAIL'}  {label}")
    say(
        f"load average {conditions['loadavg_start']} -> {conditions['loadavg_end']} on {conditions['cpus']} CPUs; "
        f"{conditions['duration_s']}s"
    )
    return {
        "bench": "mlxhub-vs-mlx_lm.server",
        "model_dir": str(model_dir),
        "settings": plan.report_settings(),
        "kernels": kernels,
        "rows": rows,
        "ratios": ratios,
        "web_tier": web,
        "engine_alone": engine_alone,
        "prefix_cache": prefix,
        "targets_met": dict(verdicts),
        "conditions": conditions,
    }


def table_rows(
    summaries: Summaries, levels: list[int], kernels: Mapping[str, Mapping[str, Any]], say: Say
) -> list[dict[str, Any]]:
    say(
        f"{'server':<14} {'kernels':<24} {'conc':>4} {'out tok/s':>10} {'TTFT p50 s':>11} {'TTFT p95 s':>11} "
        f"{'CPU ms/tok':>10} {'failed':>6}"
    )
    rows = []
    for concurrency in levels:
        for name in ROW_ORDER:
            summary = summaries.get((name, concurrency))
            if summary is None:
                continue
            cpu = summary.cpu_ms_per_token
            row = {
                "server": name,
                # mlx-lm's stream_generate runs on the hub's kernel path (prepare_model), in its environment.
                "kernels": kernel_label(kernels.get(HUB if name == IN_PROCESS else name)),
                "concurrency": concurrency,
                "output_tokens_per_s": round(summary.tokens_per_s or 0, 2),
                "ttft_p50_s": round(summary.mean_of("ttft_p50_s") or 0, 3),
                "ttft_p95_s": round(summary.mean_of("ttft_p95_s") or 0, 3),
                "server_cpu_ms_per_token": rounded(cpu, 1),
                "requests_failed": sum(run["requests_failed"] for run in summary.runs),
                "rounds": [{key: run.get(key) for key in ROUND_KEYS} for run in summary.runs],
            }
            rows.append(row)
            say(
                f"{name:<14} {row['kernels']:<24} {concurrency:>4} {row['output_tokens_per_s']:>10.2f} "
                f"{row['ttft_p50_s']:>11.3f} {row['ttft_p95_s']:>11.3f} {fmt(cpu, 1):>10} {row['requests_failed']:>6}"
            )
    return rows


def mlx_ratios(
    summaries: Summaries, levels: list[int], *, optimized: bool, say: Say
) -> tuple[list[dict[str, Any]], list[Verdict]]:
    """hub / mlx_lm.server at every concurrency, and the issues' targets on them."""
    ratios: list[dict[str, Any]] = []
    verdicts: list[Verdict] = []
    if not any(name == MLX for name, _ in summaries):
        return ratios, verdicts
    say("")
    say(
        "hub / mlx_lm.server (tok/s: higher is better; TTFT and CPU per token: lower is better; "
        "[per-round tok/s ratios])"
    )
    for concurrency in levels:
        hub, mlx = summaries[(HUB, concurrency)], summaries[(MLX, concurrency)]
        entry: dict[str, Any] = {
            "concurrency": concurrency,
            "output_tokens_per_s": rounded(ratio(hub.tokens_per_s, mlx.tokens_per_s)),
            "ttft_p50": rounded(ratio(hub.mean_of("ttft_p50_s"), mlx.mean_of("ttft_p50_s"))),
            "ttft_p95": rounded(ratio(hub.mean_of("ttft_p95_s"), mlx.mean_of("ttft_p95_s"))),
            "cpu_per_token": rounded(ratio(hub.cpu_ms_per_token, mlx.cpu_ms_per_token)),
            "output_tokens_per_s_by_round": per_round(hub, mlx),
        }
        ratios.append(entry)
        say(
            f"  c={concurrency}: tok/s x{fmt(entry['output_tokens_per_s'], 3)}  "
            f"TTFT p50 x{fmt(entry['ttft_p50'], 3)}  TTFT p95 x{fmt(entry['ttft_p95'], 3)}  "
            f"CPU/tok x{fmt(entry['cpu_per_token'], 3)}  {entry['output_tokens_per_s_by_round']}"
        )
        toks_target = TARGET_OPTIMIZED_TOKS_RATIO.get(concurrency, TARGET_TOKS_RATIO) if optimized else 1.0
        verdicts.append(
            (f"tok/s c={concurrency} >= {toks_target}x", (entry["output_tokens_per_s"] or 0) >= toks_target)
        )
        if optimized and concurrency in TARGET_OPTIMIZED_TTFT_P50_RATIO:
            ttft_target = TARGET_OPTIMIZED_TTFT_P50_RATIO[concurrency]
            met = entry["ttft_p50"] is not None and entry["ttft_p50"] <= ttft_target
            verdicts.append((f"TTFT p50 c={concurrency} <= {ttft_target}x", met))
        if concurrency in TARGET_TTFT_CONCURRENCY:
            met = entry["ttft_p95"] is not None and entry["ttft_p95"] <= TARGET_TTFT_P95_RATIO
            verdicts.append((f"TTFT p95 c={concurrency} <= {TARGET_TTFT_P95_RATIO}x", met))
    return ratios, verdicts


def web_tier(summaries: Summaries, say: Say) -> tuple[dict[str, Any], list[Verdict]]:
    """hub / in-process stream_generate at concurrency 1: the web tier's cost, checked against its target."""
    if (HUB, 1) not in summaries or (IN_PROCESS, 1) not in summaries:
        return {}, []
    hub, alone = summaries[(HUB, 1)], summaries[(IN_PROCESS, 1)]
    share = ratio(hub.tokens_per_s, alone.tokens_per_s)
    cpu = ratio(hub.cpu_ms_per_token, alone.cpu_ms_per_token)
    web = {
        "tokens_per_s_share": rounded(share),
        "cpu_per_token_ratio": rounded(cpu),
        "tokens_per_s_share_by_round": per_round(hub, alone),
    }
    overhead = None if share is None else 100 * (1 - share)
    say(
        f"  c=1 web tier: hub tok/s x{fmt(share, 3)} of in-process stream_generate (overhead "
        f"{fmt(overhead, 1)}%), CPU/tok x{fmt(cpu, 3)}  {web['tokens_per_s_share_by_round']}"
    )
    label = f"web tier overhead c=1 <= {100 * (1 - TARGET_WEB_SHARE):.0f}%"
    return web, [(label, share is not None and share >= TARGET_WEB_SHARE)]


def engine_alone_shares(summaries: Summaries, levels: list[int], say: Say) -> list[dict[str, Any]]:
    """hub / engine-alone at every concurrency: the share of the engine's own throughput the web tier leaves."""
    shares: list[dict[str, Any]] = []
    for concurrency in levels:
        hub, alone = summaries.get((HUB, concurrency)), summaries.get((ENGINE_ALONE, concurrency))
        if hub is None or alone is None:
            continue
        if not shares:
            say("")
            say("web tier: hub / engine-alone (the hub's engine and in-process client, no HTTP; [per-round tok/s])")
        in_process = summaries.get((IN_PROCESS, concurrency))
        entry: dict[str, Any] = {
            "concurrency": concurrency,
            "hub_tokens_per_s": rounded(hub.tokens_per_s, 2),
            "engine_alone_tokens_per_s": rounded(alone.tokens_per_s, 2),
            "tokens_per_s_share": rounded(ratio(hub.tokens_per_s, alone.tokens_per_s)),
            "tokens_per_s_share_by_round": per_round(hub, alone),
            "ttft_p50": rounded(ratio(hub.mean_of("ttft_p50_s"), alone.mean_of("ttft_p50_s"))),
            "ttft_p95": rounded(ratio(hub.mean_of("ttft_p95_s"), alone.mean_of("ttft_p95_s"))),
            "cpu_per_token_ratio": rounded(ratio(hub.cpu_ms_per_token, alone.cpu_ms_per_token)),
            "in_process_tokens_per_s": rounded(in_process.tokens_per_s, 2) if in_process else None,
        }
        shares.append(entry)
        beside = f"; in-process stream_generate {fmt(entry['in_process_tokens_per_s'])} tok/s" if in_process else ""
        say(
            f"  c={concurrency}: hub {fmt(entry['hub_tokens_per_s'])} tok/s, engine-alone "
            f"{fmt(entry['engine_alone_tokens_per_s'])} tok/s: x{fmt(entry['tokens_per_s_share'], 3)}  "
            f"TTFT p50 x{fmt(entry['ttft_p50'], 3)}  TTFT p95 x{fmt(entry['ttft_p95'], 3)}  "
            f"CPU/tok x{fmt(entry['cpu_per_token_ratio'], 3)}  {entry['tokens_per_s_share_by_round']}{beside}"
        )
    return shares
