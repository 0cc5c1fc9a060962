"""What log-probabilities and ``n`` cost inside the shared batch: the hub's engine alone, no web tier.

``manage.py bench_eval`` runs ``python -m inference.bench.evaluation MODEL_DIR`` in the hub's kernel
environment. One ``Engine`` on the model with its prefix cache on (``n`` shares its prefill through it),
fresh prompts for every configuration of every round, so nothing is cached across them. Each round runs,
in an order rotated from round to round:

- ``c1 plain`` / ``c1 logprobs``: one greedy request, without / with ``logprobs`` and 5 alternatives;
- ``c8 plain`` / ``c8 logprobs``: eight such requests at once;
- ``n4`` / ``4 separate``: one request with ``n: 4`` / four requests at once, each on the same prompt of
  about 500 tokens, 64 tokens per choice (temperature 1): the time from submission to the last finish.

Decode speed is 1 / the median time per token between a request's consecutive events; each figure is the
median over rounds of the ratio to its baseline in the same round, with the quartiles. Round 0 warms up.
No Django here, and no MLX until ``main`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from typing import Any

from inference.bench.common import figures_table
from inference.bench.constrained import WORDS, figure, question, timed
from inference.engine.types import GenerationRequest, ModelSpec, SamplingParams

CONFIGS = ("c1 plain", "c1 logprobs", "c8 plain", "c8 logprobs", "n4", "4 separate")
GREEDY = SamplingParams(temperature=0.0)
TOP_LOGPROBS = 5


def long_prompt(rng: random.Random, tokens: int) -> str:
    """About ``tokens`` tokens of words (a word and its space are about one token for the bench models)."""
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


async def until_done(client: Any, request: GenerationRequest) -> tuple[float, int, int]:
    """Seconds to the finish, prompt tokens, completion tokens."""
    started = time.perf_counter()
    prompt = 0
    async for event in client.open(request):
        if event["type"] == "accepted":
            prompt = event["prompt_tokens"]
        elif event["type"] == "error":
            raise RuntimeError(event["message"])
        elif event["type"] == "finish":
            return time.perf_counter() - started, prompt, event["completion_tokens"]
    raise RuntimeError("the stream ended without a finish")


async def one_config(
    client: Any, spec: ModelSpec, name: str, rng: random.Random, *, options: dict[str, int]
) -> dict[str, Any]:
    if name in ("n4", "4 separate"):
        text = long_prompt(rng, options["prompt_tokens"])
        sampling = SamplingParams(temperature=1.0)
        fields: dict[str, Any] = {
            "model": spec,
            "prompt": text,
            "max_tokens": options["n_tokens"],
            "sampling": sampling,
        }
        started = time.perf_counter()
        if name == "n4":
            _, prompt, completion = await until_done(client, GenerationRequest(**fields, n=4))
        else:
            done = await asyncio.gather(*(until_done(client, GenerationRequest(**fields)) for _ in range(4)))
            prompt, completion = done[0][1], sum(tokens for _, _, tokens in done)
        return {"seconds": time.perf_counter() - started, "prompt_tokens": prompt, "completion_tokens": completion}
    count = 1 if name.startswith("c1") else 8
    tokens = options["c1_tokens"] if count == 1 else options["c8_tokens"]
    logprobs = TOP_LOGPROBS if name.endswith("logprobs") else None
    requests = [
        GenerationRequest(
            model=spec,
            messages=[{"role": "user", "content": question(rng)}],
            max_tokens=tokens,
            sampling=GREEDY,
            logprobs=logprobs,
            request_id=uuid.uuid4().hex,
        )
        for _ in range(count)
    ]
    timings = await asyncio.gather(*(timed(client, request, first_kind="delta") for request in requests))
    per_token = [interval for timing in timings for interval in timing.per_token()]
    return {"tok_s": 1.0 / statistics.median(per_token)}


async def bench(model_dir: str, *, rounds: int, **options: int) -> dict[str, Any]:
    from inference.engine.config import EngineConfig
    from inference.engine.engine import Engine
    from inference.engine.local import InProcessEngineClient
    from mlxhub.kernels import engine_kernels

    engine = Engine(EngineConfig(kernels=engine_kernels(), prefix_cache_bytes=1 << 30, max_batch=8, prefill_batch=8))
    engine.start()
    client = InProcessEngineClient(engine=engine)
    spec: ModelSpec = {"key": model_dir, "path": model_dir, "context_length": None, "pinned": True}
    await asyncio.wrap_future(engine.preload(spec))  # type: ignore[arg-type]
    kernel = {
        key: value for key, value in engine.stats()["models"][model_dir].items() if key in ("kernel_path", "blas")
    }
    rng = random.Random(11)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    try:
        for round_index in range(rounds + 1):
            order = CONFIGS[round_index % len(CONFIGS) :] + CONFIGS[: round_index % len(CONFIGS)]
            for name in order:
                measured = await one_config(client, spec, name, rng, options=options)
                if round_index:
                    results[name].append(measured)
    finally:
        engine.stop()

    def ratio(name: str, base: str, key: str) -> list[float]:
        return [a[key] / b[key] for a, b in zip(results[name], results[base], strict=True)]

    def absolute(name: str, key: str) -> float:
        return statistics.median(values[key] for values in results[name])

    return {
        "kernel": kernel,
        "rounds": rounds,
        **options,
        "n_prompt_tokens": results["n4"][0]["prompt_tokens"],
        "figures": [
            figure(
                f"logprobs (top {TOP_LOGPROBS}) vs none, tok/s, concurrency 1",
                ratio("c1 logprobs", "c1 plain", "tok_s"),
                absolute("c1 logprobs", "tok_s"),
                absolute("c1 plain", "tok_s"),
                "tok/s",
                ">= 0.9",
            ),
            figure(
                f"logprobs (top {TOP_LOGPROBS}) vs none, tok/s, concurrency 8",
                ratio("c8 logprobs", "c8 plain", "tok_s"),
                absolute("c8 logprobs", "tok_s"),
                absolute("c8 plain", "tok_s"),
                "tok/s",
                ">= 0.9",
            ),
            figure(
                "n: 4 vs 4 separate requests, speed-up (time of 4 separate / time of n: 4)",
                ratio("4 separate", "n4", "seconds"),
                absolute("n4", "seconds"),
                absolute("4 separate", "seconds"),
                "s",
                ">= 1.8",
            ),
        ],
    }


def table(report: dict[str, Any]) -> str:
    heading = (
        f"kernel path {report['kernel']}, {report['rounds']} rounds, max_tokens {report['c1_tokens']} (c1) / "
        f"{report['c8_tokens']} (c8) / {report['n_tokens']} per choice (n), "
        f"n prompt {report['n_prompt_tokens']} tokens"
    )
    return figures_table(heading, report["figures"], measured="measured", digits=2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.bench.evaluation", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--c1-tokens", type=int, default=48)
    parser.add_argument("--c8-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--n-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON line after the table.")
    options = parser.parse_args(argv)
    report = asyncio.run(
        bench(
            options.model_dir,
            rounds=options.rounds,
            c1_tokens=options.c1_tokens,
            c8_tokens=options.c8_tokens,
            prompt_tokens=options.prompt_tokens,
            n_tokens=options.n_tokens,
        )
    )
    print(table(report))
    if options.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
