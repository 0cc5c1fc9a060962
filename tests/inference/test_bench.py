"""``manage.py bench``'s parts: the engine-alone contender on a real engine, the running order, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from inference.bench.common import BenchError, BenchPlan
from inference.bench.constants import ENGINE_ALONE, HUB, IN_PROCESS, MLX
from inference.bench.engine_alone_process import engine_alone_running
from inference.bench.report import report_build
from inference.bench.runs import RunResult, contenders
from inference.engine.config import EngineConfig
from mlxhub.kernels import engine_process_env

REPO = Path(__file__).resolve().parents[2]
# The two functions of ../shared/bench/loadgen.py the engine-alone runner takes from it (its prompts and
# percentiles). The shared folder sits beside a developer's checkout, not beside every clone CI makes, so
# the runner's tests hand it this module with the same interface.
LOADGEN_FOR_TESTS = """
import random

WORDS = ["time", "river", "stone", "light", "story", "window", "garden", "morning"]


def make_prompt(n_words, seed, index):
    rng = random.Random(seed * 1_000_003 + index)
    return "Request %d. " % index + " ".join(rng.choice(WORDS) for _ in range(max(1, n_words))) + "."


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
"""
# The keys today's JSON result has: new ones may join, none may go or change its name (README, docs).
REPORT_KEYS = {
    "bench",
    "model_dir",
    "settings",
    "kernels",
    "rows",
    "ratios",
    "web_tier",
    "prefix_cache",
    "targets_met",
    "conditions",
}
LOADGEN_KEYS = {"requests_ok", "requests_failed", "output_tokens", "wall_s", "output_tokens_per_s"}
TTFT_KEYS = {"ttft_p50_s", "ttft_p95_s"}


def plan_of(**fields) -> BenchPlan:
    defaults = {
        "levels": [1, 8],
        "concurrency": "1,8",
        "requests": 2,
        "max_tokens": 8,
        "prompt_words": 12,
        "rounds": 2,
        "warmup": 1,
        "timeout": 60.0,
    }
    return BenchPlan(**{**defaults, **fields})


@pytest.fixture(scope="module")
def loadgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loadgen")
    (folder / "loadgen.py").write_text(LOADGEN_FOR_TESTS)
    return folder


def test_the_resident_engine_alone_streams_every_token_of_every_client_run_after_run(
    tiny_model_dir: Path, loadgen_dir: Path, tmp_path: Path
):
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    # Random weights pick end-of-text now and then: banned, every request runs to max_tokens.
    end_of_text = {tokenizer.token_to_id(token): -100.0 for token in ("</s>", "<|im_end|>")}
    plan = plan_of(levels=[2, 1], concurrency="2,1", requests=2, max_tokens=8)

    with engine_alone_running(
        repo=REPO,
        hub_env=engine_process_env(os.environ),
        loadgen_dir=loadgen_dir,
        model_dir=tiny_model_dir,
        engine_config=asdict(EngineConfig()),
        log_path=tmp_path / "logs" / "engine_alone.log",
    ) as alone:
        first = alone.run(concurrency=2, seed=1000, plan=plan, logit_bias=end_of_text)
        second = alone.run(concurrency=1, seed=1001, plan=plan, logit_bias=end_of_text)
        process = alone.process

    assert first["requests_ok"] == 4, first
    assert first["requests_failed"] == 0
    assert first["output_tokens"] == 2 * 2 * 8
    assert first["output_tokens_per_s"] > 0
    # Tokens over wall time, as loadgen reports them (wall_s is rounded to the millisecond).
    wall = first["wall_s"]
    assert (
        first["output_tokens"] / (wall + 0.0005)
        <= first["output_tokens_per_s"]
        <= first["output_tokens"] / (wall - 0.0005)
    )
    assert 0 < first["ttft_p50_s"] <= first["ttft_p95_s"] < first["wall_s"]
    assert first["server_cpu_s"] > 0
    assert first["kernel"]["kernel_path"] in ("optimized", "stock")
    # loadgen's own prompts: "Request N. " and 12 words, rendered by the chat template.
    assert first["prompt_tokens_mean"] > 12
    # The same process answered the next run, then stopped its engine and exited cleanly at the end.
    assert (second["concurrency"], second["requests_ok"], second["output_tokens"]) == (1, 2, 2 * 8)
    assert process.returncode == 0


def test_a_failed_engine_alone_start_is_a_bench_error_with_the_process_log(loadgen_dir: Path, tmp_path: Path):
    with (
        pytest.raises(BenchError, match="engine-alone process exited") as failure,
        engine_alone_running(
            repo=REPO,
            hub_env=engine_process_env(os.environ),
            loadgen_dir=loadgen_dir,
            model_dir=tmp_path / "no-model",
            engine_config=asdict(EngineConfig()),
            log_path=tmp_path / "engine_alone.log",
        ),
    ):
        pass

    assert "config.json" in str(failure.value)


def test_the_engine_alone_process_never_sets_django_up(loadgen_dir: Path):
    probe = (
        "import json, sys\n"
        "import inference.bench.engine_alone\n"
        "from django.conf import settings\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('django.'))\n"
        "print(json.dumps({'configured': settings.configured, 'loaded': loaded}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    state = json.loads(done.stdout.strip().splitlines()[-1])

    assert state["configured"] is False
    # mlxhub/__init__.py makes the Celery app, which imports django.conf; nothing of the ORM or the app registry.
    assert not [name for name in state["loaded"] if name.startswith(("django.apps", "django.db", "django.core.mana"))]


def test_the_commands_side_of_the_bench_loads_no_mlx():
    probe = (
        "import sys\n"
        "import inference.management.commands.bench, inference.bench.report\n"
        "print(sorted(name for name in sys.modules if name == 'mlx' or name.startswith(('mlx.', 'mlx_lm'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )

    # MLX belongs to the contenders' own processes, never to the one that starts and measures them.
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_engine_alone_runs_at_every_concurrency_and_stream_generate_only_at_one():
    servers = {HUB: None, MLX: None}

    assert contenders(servers, 1, engine_alone=True) == [IN_PROCESS, ENGINE_ALONE, HUB, MLX]
    assert contenders(servers, 8, engine_alone=True) == [ENGINE_ALONE, HUB, MLX]
    assert contenders(servers, 8, engine_alone=False) == [HUB, MLX]
    assert contenders({HUB: None}, 1, engine_alone=True) == [IN_PROCESS, ENGINE_ALONE, HUB]


KERNEL = {"kernel_path": "optimized", "blas": "mkl", "weights_dtype": "float32"}


def figures(tokens_per_s: float, *, ttft: float = 0.2, tokens: int = 256, cpu: float = 2.56) -> dict:
    return {
        "requests_ok": 2,
        "requests_failed": 0,
        "output_tokens": tokens,
        "wall_s": tokens / tokens_per_s,
        "output_tokens_per_s": tokens_per_s,
        "ttft_p50_s": ttft,
        "ttft_p95_s": ttft * 1.5,
        "server_cpu_s": cpu,
        "kernel": KERNEL,
    }


def fixed_results() -> list[RunResult]:
    """Two rounds at concurrency 1 and 8; every round's hub tok/s is a known share of the others'."""
    results = []
    for round_index, scale in enumerate((1.0, 0.5)):
        results += [
            RunResult(HUB, 1, round_index, figures(45 * scale, cpu=2.56)),
            RunResult(ENGINE_ALONE, 1, round_index, figures(50 * scale, cpu=2.048)),
            RunResult(IN_PROCESS, 1, round_index, figures(60 * scale)),
            RunResult(MLX, 1, round_index, figures(15 * scale, ttft=1.6)),
            RunResult(HUB, 8, round_index, figures(180 * scale, ttft=1.0)),
            RunResult(ENGINE_ALONE, 8, round_index, figures(200 * scale, ttft=0.8)),
            RunResult(MLX, 8, round_index, figures(30 * scale, ttft=8.0)),
        ]
    return results


def build_report(results: list[RunResult], lines: list[str]) -> dict:
    return report_build(
        results=results,
        prefix={},
        plan=plan_of(),
        model_dir=Path("/models/small"),
        conditions={"loadavg_start": [1.0], "loadavg_end": [1.1], "cpus": 2, "duration_s": 12.5},
        kernels={HUB: KERNEL, MLX: {"kernel_path": "stock", "blas": None, "weights_dtype": "bfloat16"}},
        say=lines.append,
    )


def test_the_report_gives_the_hubs_share_of_the_engine_alone_at_every_concurrency():
    lines: list[str] = []
    report = build_report(fixed_results(), lines)

    by_level = {entry["concurrency"]: entry for entry in report["engine_alone"]}
    assert set(by_level) == {1, 8}
    # Tok/s are tokens over wall time summed over the rounds: 512 tokens in 256/45 + 256/22.5 s at c=1.
    assert by_level[1]["hub_tokens_per_s"] == 30.0
    assert by_level[1]["engine_alone_tokens_per_s"] == pytest.approx(33.33, abs=0.01)
    assert by_level[1]["tokens_per_s_share"] == 0.9
    assert by_level[1]["tokens_per_s_share_by_round"] == [0.9, 0.9]
    assert by_level[1]["in_process_tokens_per_s"] == 40.0
    assert by_level[1]["cpu_per_token_ratio"] == 1.25
    assert by_level[8]["tokens_per_s_share"] == 0.9
    assert by_level[8]["ttft_p50"] == 1.25
    assert by_level[8]["in_process_tokens_per_s"] is None
    assert any(line.startswith("  c=8: hub 120.00 tok/s, engine-alone 133.33 tok/s: x0.900") for line in lines)


def test_the_report_keeps_every_key_and_figure_it_had_before_the_engine_alone():
    lines: list[str] = []
    report = build_report(fixed_results(), lines)

    assert set(report) == REPORT_KEYS | {"engine_alone"}
    rows = {(row["server"], row["concurrency"]): row for row in report["rows"]}
    assert set(rows) == {(HUB, 1), (MLX, 1), (IN_PROCESS, 1), (ENGINE_ALONE, 1), (HUB, 8), (MLX, 8), (ENGINE_ALONE, 8)}
    assert rows[(ENGINE_ALONE, 8)]["kernels"] == "optimized/mkl float32"
    assert rows[(HUB, 1)]["server_cpu_ms_per_token"] == 10.0
    assert report["kernels"][ENGINE_ALONE] == KERNEL
    assert report["web_tier"] == {
        "tokens_per_s_share": 0.75,
        "cpu_per_token_ratio": 1.0,
        "tokens_per_s_share_by_round": [0.75, 0.75],
    }
    ratios = {entry["concurrency"]: entry for entry in report["ratios"]}
    assert ratios[1]["output_tokens_per_s"] == 3.0
    assert ratios[8]["output_tokens_per_s_by_round"] == [6.0, 6.0]
    assert report["targets_met"] == {
        "tok/s c=1 >= 2.5x": True,
        "TTFT p50 c=1 <= 0.25x": True,
        "tok/s c=8 >= 4.0x": True,
        "TTFT p95 c=8 <= 1.0x": True,
        "web tier overhead c=1 <= 10%": False,
    }


def test_the_report_has_no_engine_alone_figures_when_it_was_skipped():
    results = [result for result in fixed_results() if result.server != ENGINE_ALONE]
    lines: list[str] = []
    report = build_report(results, lines)

    assert report["engine_alone"] == []
    assert ENGINE_ALONE not in report["kernels"]
    assert not any("engine-alone" in line for line in lines)
