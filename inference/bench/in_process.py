"""The in-process contender: the hub's concurrency-1 prompts through mlx-lm's ``stream_generate``.

One fresh process on the hub's kernel path, no engine, no web tier: what mlx-lm alone makes of
the same prompts, one after another, for the web tier's cost at concurrency 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.bench.common import BenchPlan, json_process
from inference.bench.constants import PROCESS_START_BUDGET_S

# Runs the hub's concurrency-1 prompts with mlx-lm in-process, on the kernel path of its environment.
IN_PROCESS_SCRIPT = """
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import mlx_lm
from mlx_lm.generate import stream_generate
from inference.engine.kernels import prepare_model
from mlxhub.kernels import engine_kernels
from loadgen import make_prompt
model_dir, (words, max_tokens, warmup, seed, requests) = sys.argv[3], map(int, sys.argv[4:9])
model, tokenizer = mlx_lm.load(model_dir)[:2]
kernel = prepare_model(model, path=model_dir, plan=engine_kernels())
def one(index):
    messages = [{"role": "user", "content": make_prompt(words, seed, index)}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    started, first, tokens = time.perf_counter(), None, 0
    for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
        first = first or time.perf_counter() - started
        tokens = response.generation_tokens
    return tokens, time.perf_counter() - started, first
cpu_started = time.process_time()
for index in range(warmup):
    one(10_000_000 + index)
runs = [one(index) for index in range(requests)]
tokens, wall = sum(run[0] for run in runs), sum(run[1] for run in runs)
ttfts = sorted(run[2] for run in runs)
print(json.dumps({"requests_ok": len(runs), "requests_failed": 0, "output_tokens": tokens, "wall_s": round(wall, 3),
                  "output_tokens_per_s": round(tokens / wall, 2), "ttft_p50_s": round(ttfts[len(ttfts) // 2], 4),
                  "ttft_p95_s": round(ttfts[-1], 4), "server_cpu_s": time.process_time() - cpu_started,
                  "kernel": kernel}))
"""


def in_process_run(
    *, repo: Path, hub_env: Mapping[str, str], loadgen_dir: Path, model_dir: Path, seed: int, plan: BenchPlan
) -> dict[str, Any]:
    """One client's prompts through mlx-lm's stream_generate in a fresh process on the hub's kernel path."""
    command = [
        sys.executable,
        "-c",
        IN_PROCESS_SCRIPT,
        str(repo),
        str(loadgen_dir),
        str(model_dir),
        *(str(value) for value in (plan.prompt_words, plan.max_tokens, plan.warmup, seed, plan.requests)),
    ]
    budget = plan.timeout * (plan.requests + plan.warmup) + PROCESS_START_BUDGET_S
    return json_process(command, env=hub_env, cwd=repo, budget=budget, what="the in-process run")
