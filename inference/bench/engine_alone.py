"""The engine-alone contender: the hub's own Engine and in-process client, driven from asyncio, no web tier.

This module is what runs inside the process (``engine_alone_process`` is the command's handle on it). A
resident process on the hub's kernel path (``python -m inference.bench.engine_alone SETUP`` in the
environment ``engine_process_env`` gives the hub), started with the servers and stopped with them, so
its engine is as warm as the hub's for every run: an ``Engine`` with the hub's settings loads the model
(pinned, preloaded, as the bench registers it with the hub), then for each run (one JSON line on stdin,
its figures one JSON line back) C asyncio clients each send ``--requests`` chat requests through
``InProcessEngineClient``, the very object the hub's /v1 views talk to: the prompts loadgen.py sends the
hub, the same max_tokens, temperature 0. Figures are loadgen's: output tokens are the engine's
completion tokens (the hub's usage block), wall time runs from the first measured request to the last
one's end, TTFT is the time from submitting a request to its first event with text (loadgen's first
content chunk), percentiles are loadgen's own function. What the hub loses against these figures is
its web tier: HTTP, daphne, Django, the /v1 view, SSE.

No Django here: the command reads the settings and hands this module plain values.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from inference.bench.common import loadgen_module
from inference.bench.constants import READY_TIMEOUT_S

# The engine's names, all in this one block: the benchmark drives exactly what the hub's web tier drives.
from inference.engine.config import EngineConfig
from inference.engine.engine import Engine
from inference.engine.local import InProcessEngineClient
from inference.engine.types import EngineError, GenerationRequest, ModelSpec, SamplingParams
from mlxhub.kernels import engine_kernels

# loadgen.py's warm-up requests take prompt indices from here on, so they never repeat a measured prompt.
WARMUP_INDEX = 10_000_000
KERNEL_KEYS = ("kernel_path", "blas", "weights_dtype")


def engine_alone_measure(
    client: InProcessEngineClient,
    *,
    loadgen: ModuleType,
    spec: ModelSpec,
    concurrency: int,
    requests: int,
    prompt_words: int,
    max_tokens: int,
    warmup: int,
    seed: int,
    timeout: float,
    logit_bias: dict[str, float],
) -> dict[str, Any]:
    """In the resident process: one run, with the process's CPU seconds over it (warm-up included, as elsewhere)."""
    sampling = SamplingParams(temperature=0.0, logit_bias={int(token): bias for token, bias in logit_bias.items()})
    cpu_started = time.process_time()
    figures = asyncio.run(
        drive(
            client,
            loadgen=loadgen,
            spec=spec,
            sampling=sampling,
            concurrency=concurrency,
            requests=requests,
            prompt_words=prompt_words,
            max_tokens=max_tokens,
            warmup=warmup,
            seed=seed,
            timeout=timeout,
        )
    )
    figures["server_cpu_s"] = time.process_time() - cpu_started
    return figures


def model_spec(model_dir: Path) -> ModelSpec:
    """The model as the hub's profile gives it to the engine: keyed by its folder, pinned, its config's context."""
    config = json.loads((model_dir / "config.json").read_text())
    # What catalog.model_facts.context_length_of reads (that module is Django's side).
    context = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return {
        "key": str(model_dir),
        "path": str(model_dir),
        "context_length": int(context) if context else None,
        "kind": "text",
        "pinned": True,
        "idle_ttl": None,
    }


async def drive(
    client: InProcessEngineClient,
    *,
    loadgen: ModuleType,
    spec: ModelSpec,
    sampling: SamplingParams,
    concurrency: int,
    requests: int,
    prompt_words: int,
    max_tokens: int,
    warmup: int,
    seed: int,
    timeout: float,
) -> dict[str, Any]:
    """loadgen.run_load's run, through the engine client: warm-up one by one, then C clients of R requests each."""

    def request_for(index: int) -> GenerationRequest:
        return GenerationRequest(
            request_id=uuid.uuid4().hex,
            model=spec,
            messages=[{"role": "user", "content": loadgen.make_prompt(prompt_words, seed, index)}],
            max_tokens=max_tokens,
            sampling=sampling,
        )

    warm = [await one_request(client, request_for(WARMUP_INDEX + index), timeout) for index in range(warmup)]
    results: list[dict[str, Any]] = []
    begin = time.perf_counter()

    async def one_client(client_index: int) -> None:
        for number in range(requests):
            results.append(await one_request(client, request_for(client_index * requests + number), timeout))

    await asyncio.gather(*(one_client(client_index) for client_index in range(concurrency)))
    wall = max((result["t_end"] for result in results), default=time.perf_counter()) - begin
    return figures_of(
        results,
        loadgen=loadgen,
        wall=wall,
        warm_failed=sum(not result["ok"] for result in warm),
        header={
            "concurrency": concurrency,
            "requests_per_client": requests,
            "max_tokens": max_tokens,
            "prompt_words": prompt_words,
            "warmup": warmup,
        },
    )


async def one_request(client: InProcessEngineClient, request: GenerationRequest, timeout: float) -> dict[str, Any]:
    """One request's timings, with loadgen.one_request's fields: chunks are events that carry text."""
    result: dict[str, Any] = {"ok": False, "chunks": 0, "completion_tokens": None, "prompt_tokens": None}
    result.update({"ttft": None, "gaps": [], "error": None, "t_last_chunk": None})
    started = result["t_start"] = time.perf_counter()
    deadline = started + timeout
    try:
        stream = client.open(request)
    except EngineError as exc:
        result["error"] = f"{exc.status} {exc.code}: {exc}"[:300]
        result["t_end"] = time.perf_counter()
        return result
    try:
        while True:
            event = await stream.next_event(max(0.0, deadline - time.perf_counter()))
            now = time.perf_counter()
            if event is None:
                result["error"] = "timeout"
                break
            if event["type"] == "error":
                result["error"] = f"{event['status']} {event['code']}: {event['message']}"[:300]
                break
            if (event["type"] == "delta" or event["type"] == "finish") and event["text"]:
                if result["chunks"] == 0:
                    result["ttft"] = now - started
                else:
                    result["gaps"].append(now - result["t_last_chunk"])
                result["chunks"] += 1
                result["t_last_chunk"] = now
            if event["type"] == "finish":
                result["completion_tokens"] = event["completion_tokens"]
                result["prompt_tokens"] = event["prompt_tokens"]
                break
    finally:
        stream.cancel()  # nothing to cancel once finished; frees the slot of a request that timed out
    result["t_end"] = time.perf_counter()
    result["ok"] = result["error"] is None and result["chunks"] > 0
    if result["error"] is None and not result["ok"]:
        result["error"] = "no content chunks"
    return result


def figures_of(
    results: list[dict[str, Any]], *, loadgen: ModuleType, wall: float, warm_failed: int, header: dict[str, Any]
) -> dict[str, Any]:
    """loadgen.run_load's summary of a run, key for key where the engine has the figure."""
    percentile = loadgen.percentile
    ok = [result for result in results if result["ok"]]
    failed = [result for result in results if not result["ok"]]
    output_tokens = sum(result["completion_tokens"] for result in ok)
    ttfts = [result["ttft"] for result in ok if result["ttft"] is not None]
    gaps = [gap for result in ok for gap in result["gaps"]]
    decode_rates = []
    for result in ok:
        span = result["t_last_chunk"] - (result["t_start"] + result["ttft"])
        if result["completion_tokens"] > 1 and span > 0:
            decode_rates.append((result["completion_tokens"] - 1) / span)
    prompt_tokens = [result["prompt_tokens"] for result in ok]

    def rnd(value: float | None, digits: int = 4) -> float | None:
        return None if value is None else round(value, digits)

    return {
        **header,
        "warmup_failed": warm_failed,
        "requests_ok": len(ok),
        "requests_failed": len(failed),
        "errors": sorted({result["error"] for result in failed if result["error"]})[:3],
        "output_tokens": output_tokens,
        "token_source": "usage",
        "chunks": sum(result["chunks"] for result in ok),
        "prompt_tokens_mean": rnd(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else None,
        "wall_s": rnd(wall, 3),
        "output_tokens_per_s": rnd(output_tokens / wall if wall > 0 else None, 2),
        "ttft_p50_s": rnd(percentile(ttfts, 50)),
        "ttft_p95_s": rnd(percentile(ttfts, 95)),
        "itl_p50_s": rnd(percentile(gaps, 50)),
        "itl_p95_s": rnd(percentile(gaps, 95)),
        "per_request_decode_tps_p50": rnd(percentile(decode_rates, 50), 2),
    }


def main(argv: list[str]) -> int:
    """The resident process: load the model, say so, then answer one run per stdin line until its end."""
    setup = json.loads(argv[0])
    loadgen = loadgen_module(Path(setup["loadgen_dir"]))
    spec = model_spec(Path(setup["model_dir"]))
    # This process's own kernel path (its environment carries the hub's BLAS preload), as the hub's engine gets it.
    config = {**setup["engine_config"], "kernels": engine_kernels()}
    engine = Engine(EngineConfig(**config))
    engine.start()
    try:
        client = InProcessEngineClient(engine=engine)
        stats = engine.preload(spec).result(timeout=READY_TIMEOUT_S)
        print(json.dumps({"kernel": {key: stats.get(key) for key in KERNEL_KEYS}}), flush=True)
        for line in sys.stdin:
            # Failed requests are figures too: the command reports them as it does loadgen's.
            print(json.dumps(engine_alone_measure(client, loadgen=loadgen, spec=spec, **json.loads(line))), flush=True)
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
