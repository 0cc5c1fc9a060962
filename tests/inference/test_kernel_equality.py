"""The optimized kernel path (float32 through a preloaded BLAS) picks the same greedy tokens as the stock
float32 path (MLX with its bundled reference BLAS), alone and in a batch.

Each path runs in its own process, since a BLAS preload is fixed when a process starts: this file,
run as a script, decodes greedily and prints every step's top log-probabilities as JSON. Where two
runs part, the first differing token must be a near tie: a log-probability (so logit) gap below 1e-3
between the two tokens in the reference run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlxhub.kernels import engine_process_env, find_blas

REPO = Path(__file__).resolve().parents[2]
STEPS = 24
TOP = 5
TIE = 1e-3
PROMPTS = [[5, 17, 42, 99, 7, 3], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22], [300, 8, 1]]

pytestmark = pytest.mark.skipif(
    find_blas(os.environ.get("MLXHUB_BLAS_LIBRARY", "")) is None,
    reason="no BLAS library to preload (the mkl package is x86_64 only): the optimized path cannot run here",
)


# ---- the worker (one process per kernel path) ------------------------------------------------------------


def _synthetic_llama(quantize: bool) -> Any:
    """The benchmark model's width (hidden 512, vocab 8000) on 2 layers, random bfloat16 weights."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models.llama import Model, ModelArgs

    mx.random.seed(7)
    args = ModelArgs(
        model_type="llama",
        hidden_size=512,
        num_hidden_layers=2,
        intermediate_size=1408,
        num_attention_heads=8,
        num_key_value_heads=4,
        rms_norm_eps=1e-5,
        vocab_size=8000,
        tie_word_embeddings=False,
    )
    model = Model(args)
    model.set_dtype(mx.bfloat16)
    if quantize:
        nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    return model


def _steps(logprobs: Any, token: int) -> dict[str, Any]:
    import mlx.core as mx

    top = mx.argsort(-logprobs)[:TOP].tolist()
    return {"token": token, "top": {str(index): logprobs[index].item() for index in top}}


def _alone(model: Any, prompt: list[int]) -> list[dict[str, Any]]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    steps = []
    for token, logprobs in generate_step(mx.array(prompt), model, max_tokens=STEPS):
        steps.append(_steps(logprobs.astype(mx.float32), int(token)))
    return steps


def _batched(model: Any, prompts: list[list[int]]) -> list[list[dict[str, Any]]]:
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    batch = BatchGenerator(model, completion_batch_size=len(prompts), prefill_batch_size=len(prompts))
    uids = batch.insert(prompts, [STEPS] * len(prompts))
    steps: dict[int, list[dict[str, Any]]] = {uid: [] for uid in uids}
    while responses := batch.next_generated():
        for response in responses:
            steps[response.uid].append(_steps(response.logprobs.astype(mx.float32), int(response.token)))
    batch.close()
    return [steps[uid] for uid in uids]


def worker(kind: str, tiny_dir: str) -> dict[str, Any]:
    """Greedy runs of every test model on this process's kernel path (stock: cast to float32 here)."""
    import mlx.core as mx
    import mlx_lm

    from inference.engine.kernels import prepare_model
    from mlxhub.kernels import engine_kernels

    models = {
        "tiny": lambda: mlx_lm.load(tiny_dir)[0],
        "wide": lambda: _synthetic_llama(quantize=False),
        "wide-q4": lambda: _synthetic_llama(quantize=True),
    }
    report: dict[str, Any] = {}
    for name, make in models.items():
        model = make()
        info = prepare_model(model, path=name, plan=engine_kernels())
        if kind == "stock":
            assert info["kernel_path"] == "stock", info
            model.set_dtype(mx.float32)  # the reference: the same float32 arithmetic on MLX's bundled BLAS
        else:
            assert info["kernel_path"] == "optimized", info
        report[name] = {
            "info": info,
            "alone": [_alone(model, prompt) for prompt in PROMPTS],
            "batched": _batched(model, PROMPTS),
        }
    return report


# ---- the tests -----------------------------------------------------------------------------------------


def first_difference(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> str | None:
    """None when the token sequences agree, or part only at a near tie; else why they part."""
    for index, (expected, got) in enumerate(zip(reference, other, strict=True)):
        if expected["token"] == got["token"]:
            continue
        top = expected["top"]
        gap = top[str(expected["token"])] - top.get(str(got["token"]), float("-inf"))
        if gap < TIE:
            return None  # a tie within float32 rounding: later tokens follow different prefixes
        return f"step {index}: {expected['token']} vs {got['token']}, log-probability gap {gap:.3g}"
    return None


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path) -> dict[str, dict[str, Any]]:
    results = {}
    for kind in ("stock", "optimized"):
        env = engine_process_env({**os.environ, "MLXHUB_CPU_KERNELS": kind, "PYTHONPATH": str(REPO)})
        done = subprocess.run(
            [sys.executable, __file__, kind, str(tiny_model_dir)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("model", ["tiny", "wide", "wide-q4"])
def test_the_optimized_path_picks_the_stock_float32_greedy_tokens(runs, model):
    stock, optimized = runs["stock"][model], runs["optimized"][model]

    assert optimized["info"]["weights_dtype"] == "float32"
    for prompt_index in range(len(PROMPTS)):
        assert first_difference(stock["alone"][prompt_index], optimized["alone"][prompt_index]) is None, prompt_index


@pytest.mark.parametrize("model", ["tiny", "wide", "wide-q4"])
def test_on_the_optimized_path_a_batch_picks_the_tokens_each_prompt_gets_alone(runs, model):
    optimized = runs["optimized"][model]

    for prompt_index in range(len(PROMPTS)):
        alone, batched = optimized["alone"][prompt_index], optimized["batched"][prompt_index]
        assert first_difference(alone, batched) is None, prompt_index


def test_the_first_step_log_probabilities_of_both_paths_agree_within_1e_3(runs):
    # Same prompt, no generated prefix yet: the two paths see identical inputs.
    for model in ("tiny", "wide"):
        for prompt_index in range(len(PROMPTS)):
            stock = runs["stock"][model]["alone"][prompt_index][0]["top"]
            optimized = runs["optimized"][model]["alone"][prompt_index][0]["top"]
            shared = stock.keys() & optimized.keys()
            assert shared, (model, prompt_index)
            assert max(abs(stock[token] - optimized[token]) for token in shared) < TIE, (model, prompt_index)


def test_a_quantized_model_is_dequantized_on_the_optimized_path_and_kept_on_the_stock_one(runs):
    assert runs["optimized"]["wide-q4"]["info"]["dequantized"] is True
    assert runs["optimized"]["wide-q4"]["info"]["quantization"] is None
    assert runs["stock"]["wide-q4"]["info"]["quantization"] == {"bits": 4, "group_size": 64}
    assert runs["stock"]["wide-q4"]["info"]["weights_dtype"] == "bfloat16+uint32"


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2])))
