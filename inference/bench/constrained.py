"""What enforcing a grammar costs inside the shared batch: the hub's engine alone, no web tier.

``manage.py bench_constrained`` runs ``python -m inference.bench.constrained MODEL_DIR`` in the hub's
kernel environment (so the engine computes as the hub's does). One ``Engine`` on the model, the prefix
cache off (every request pays its own prefill), greedy decoding. Each round runs every configuration
back to back, in an order rotated from round to round, on fresh prompts (about 30 tokens each):

- ``c1 plain`` / ``c1 json``: one request, unconstrained / with a JSON schema it cannot finish before
  ``max_tokens`` (an array of at least 200 integers), so the row never leaves early;
- ``c8 plain`` / ``c8 json``: eight such requests at once;
- ``mixed``: four of each at once; only the four unconstrained rows are measured;
- ``ttft plain`` / ``ttft tool``: the same prompt (a user question and two tools in a system message,
  as a template without tool support gets them), unconstrained / with a forced call over both tools:
  the time from submission to the first text delta / to the first tool_call event.

A configuration's decode speed is 1 / the median time per token between a request's consecutive events
(it shrugs off other tenants' preemption spikes on a shared machine); each figure is the median over
rounds of the ratio to the plain configuration of the same round, with the quartiles. Round 0 warms up.

No Django here, and no MLX until ``main`` runs (the module is importable on the web side).
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
from dataclasses import dataclass, field
from typing import Any

from inference.bench.common import figures_table
from inference.engine.grammars import tools_system_message
from inference.engine.types import GenerationRequest, GrammarSpec, ModelSpec, SamplingParams

WORDS = """
the river mountain boy dog food water city light house tree story music north school world paper
letter answer country father mother night sea sun road garden friend table window morning summer
""".split()  # noqa: SIM905  (a word list reads better as text)
# A schema a random model cannot finish inside max_tokens: constrained rows stay in the batch to the end.
ENDLESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999}, "minItems": 200}
    },
    "required": ["items"],
}
TOOLS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers",
            "parameters": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
            },
        },
    },
)
CONFIGS = ("c1 plain", "c1 json", "c8 plain", "c8 json", "mixed", "ttft plain", "ttft tool")
GREEDY = SamplingParams(temperature=0.0)


@dataclass
class Timing:
    submitted: float
    first: float | None = None  # first text delta, or first tool_call event
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens generated so far)
    prompt_tokens: int = 0
    finish_reason: str = ""

    def per_token(self) -> list[float]:
        return [
            (later - earlier) / (count - before)
            for (earlier, before), (later, count) in zip(self.marks, self.marks[1:], strict=False)
            if count > before
        ]


async def timed(client: Any, request: GenerationRequest, *, first_kind: str, then_cancel: bool = False) -> Timing:
    timing = Timing(submitted=time.perf_counter())
    stream = client.open(request)
    async for event in stream:
        now = time.perf_counter()
        kind = event["type"]
        if kind == "accepted":
            timing.prompt_tokens = event["prompt_tokens"]
        elif kind == "delta":
            timing.marks.append((now, event["tokens"]))
        elif kind == "finish":
            timing.marks.append((now, event["completion_tokens"]))
            timing.finish_reason = event["finish_reason"]
        elif kind == "error":
            raise RuntimeError(f"{request.request_id}: {event['message']}")
        if timing.first is None and kind == first_kind and (kind != "delta" or event["text"]):
            timing.first = now
            if then_cancel:
                stream.cancel()
    return timing


def question(rng: random.Random, words: int = 24) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def request_for(
    spec: ModelSpec, *, prompt: str, max_tokens: int, grammar: GrammarSpec | None = None
) -> GenerationRequest:
    messages = [{"role": "user", "content": prompt}]
    return GenerationRequest(
        model=spec,
        messages=messages,
        max_tokens=max_tokens,
        sampling=GREEDY,
        grammar=grammar,
        request_id=uuid.uuid4().hex,
    )


async def one_config(
    client: Any,
    spec: ModelSpec,
    name: str,
    rng: random.Random,
    *,
    ttft_question: str,
    c1_tokens: int,
    c8_tokens: int,
) -> dict[str, Any]:
    """One configuration of one round: the figure it is measured by."""
    json_grammar = GrammarSpec("json_schema", schema=ENDLESS_SCHEMA)
    if name.startswith("ttft"):
        text = ttft_question
        if name == "ttft plain":
            messages = [{"role": "system", "content": tools_system_message(TOOLS)}, {"role": "user", "content": text}]
            request = GenerationRequest(model=spec, messages=messages, max_tokens=64, sampling=GREEDY)
            timing = await timed(client, request, first_kind="delta", then_cancel=True)
        else:
            grammar = GrammarSpec("tool_calls", tools=TOOLS, parallel=False)
            request = GenerationRequest(
                model=spec,
                messages=[{"role": "user", "content": text}],
                tools=list(TOOLS),
                grammar=grammar,
                max_tokens=64,
                sampling=GREEDY,
            )
            timing = await timed(client, request, first_kind="tool_call", then_cancel=True)
        assert timing.first is not None, name
        return {"first_s": timing.first - timing.submitted, "prompt_tokens": timing.prompt_tokens}
    count = 1 if name.startswith("c1") else 8
    tokens = c1_tokens if count == 1 else c8_tokens
    constrained = [name.endswith("json") or (name == "mixed" and index % 2 == 0) for index in range(count)]
    requests = [
        request_for(spec, prompt=question(rng), max_tokens=tokens, grammar=json_grammar if grammar else None)
        for grammar in constrained
    ]
    timings = await asyncio.gather(*(timed(client, request, first_kind="delta") for request in requests))
    measured = [timing for timing, grammar in zip(timings, constrained, strict=True) if name != "mixed" or not grammar]
    for timing in timings:
        assert timing.finish_reason == "length", f"{name}: a row left early ({timing.finish_reason})"
    per_token = [interval for timing in measured for interval in timing.per_token()]
    return {"tok_s": 1.0 / statistics.median(per_token)}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return middle, low, high


async def bench(model_dir: str, *, rounds: int, c1_tokens: int, c8_tokens: int) -> dict[str, Any]:
    from inference.engine.config import EngineConfig
    from inference.engine.engine import Engine
    from inference.engine.local import InProcessEngineClient
    from mlxhub.kernels import engine_kernels

    engine = Engine(EngineConfig(kernels=engine_kernels(), prefix_cache_bytes=0, max_batch=8, prefill_batch=8))
    engine.start()
    client = InProcessEngineClient(engine=engine)
    spec: ModelSpec = {"key": model_dir, "path": model_dir, "context_length": None, "pinned": True}
    await asyncio.wrap_future(engine.preload(spec))  # type: ignore[arg-type]
    kernel = {
        key: value for key, value in engine.stats()["models"][model_dir].items() if key in ("kernel_path", "blas")
    }
    rng = random.Random(7)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    try:
        for round_index in range(rounds + 1):
            order = CONFIGS[round_index % len(CONFIGS) :] + CONFIGS[: round_index % len(CONFIGS)]
            ttft_question = question(rng, 12)  # the two TTFT requests of a round send the same prompt
            for name in order:
                measured = await one_config(
                    client, spec, name, rng, ttft_question=ttft_question, c1_tokens=c1_tokens, c8_tokens=c8_tokens
                )
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
        "c1_tokens": c1_tokens,
        "c8_tokens": c8_tokens,
        "ttft_prompt_tokens": {name: results[name][0]["prompt_tokens"] for name in ("ttft plain", "ttft tool")},
        "figures": [
            figure(
                "json_schema vs unconstrained tok/s, concurrency 1",
                ratio("c1 json", "c1 plain", "tok_s"),
                absolute("c1 json", "tok_s"),
                absolute("c1 plain", "tok_s"),
                "tok/s",
                ">= 0.9",
            ),
            figure(
                "json_schema vs unconstrained tok/s, concurrency 8",
                ratio("c8 json", "c8 plain", "tok_s"),
                absolute("c8 json", "tok_s"),
                absolute("c8 plain", "tok_s"),
                "tok/s",
                ">= 0.9",
            ),
            figure(
                "4+4 mixed: unconstrained rows vs a plain batch of 8",
                ratio("mixed", "c8 plain", "tok_s"),
                absolute("mixed", "tok_s"),
                absolute("c8 plain", "tok_s"),
                "tok/s",
                ">= 0.9",
            ),
            figure(
                "first tool-call event vs plain first token, same prompt",
                ratio("ttft tool", "ttft plain", "first_s"),
                1e3 * absolute("ttft tool", "first_s"),
                1e3 * absolute("ttft plain", "first_s"),
                "ms",
                "about 1",
            ),
        ],
    }


def figure(label: str, ratios: list[float], measured: float, baseline: float, unit: str, goal: str) -> dict[str, Any]:
    median, low, high = quartiles(ratios)
    return {
        "label": label,
        "median": median,
        "low": low,
        "high": high,
        "measured": measured,
        "baseline": baseline,
        "unit": unit,
        "goal": goal,
    }


def table(report: dict[str, Any]) -> str:
    heading = (
        f"kernel path {report['kernel']}, {report['rounds']} rounds, max_tokens {report['c1_tokens']} (c1) / "
        f"{report['c8_tokens']} (c8), TTFT prompt tokens {report['ttft_prompt_tokens']}"
    )
    return figures_table(heading, report["figures"], measured="constrained", digits=1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.bench.constrained", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--c1-tokens", type=int, default=48)
    parser.add_argument("--c8-tokens", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON line after the table.")
    options = parser.parse_args(argv)
    report = asyncio.run(
        bench(options.model_dir, rounds=options.rounds, c1_tokens=options.c1_tokens, c8_tokens=options.c8_tokens)
    )
    print(table(report))
    if options.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
