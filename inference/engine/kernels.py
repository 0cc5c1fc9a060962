"""How a loaded model's weights are served on this CPU (the kernel path).

The engine calls ``prepare_model`` once per load, on its own thread, right after the
weights are read and before it measures them; what it returns is shown with the model's
stats. On the optimized path (a BLAS preloaded into this process, as ``KernelConfig`` says) the
float weights become float32, so every matmul runs through that BLAS. A quantized
checkpoint is dequantized to float32 when that fits (``DEQUANTIZE_MAX_MEMORY_FRACTION``),
else it keeps its quantized weights with float32 scales and activations; both measured far
faster here than the stock quantized path (docs/benchmarks.md). The stock path leaves the
weights as the checkpoint stores them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from inference.engine.config import KernelConfig

FLOAT32_BYTES = 4
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _quantized_layers(model: Any) -> dict[str, Any]:
    import mlx.nn as nn

    quantized = (nn.QuantizedLinear, nn.QuantizedEmbedding)
    return {name: module for name, module in model.named_modules() if isinstance(module, quantized)}


def _float32_bytes(model: Any, quantized: dict[str, Any]) -> int:
    """What the weights would hold as float32, the quantized layers dequantized."""
    from mlx.utils import tree_flatten

    total = 0
    for name, array in cast(list[tuple[str, Any]], tree_flatten(model.parameters())):
        owner, _, leaf = name.rpartition(".")
        if owner in quantized and leaf == "weight":
            # Packed weights hold 32 / bits values per uint32 ...
            total += array.size * 32 // quantized[owner].bits * FLOAT32_BYTES
        elif not (owner in quantized and leaf in ("scales", "biases")):  # ... which absorb the scales and biases
            total += array.size * FLOAT32_BYTES
    return total


def _weights_dtype(model: Any) -> str:
    from mlx.utils import tree_flatten

    arrays = cast(list[tuple[str, Any]], tree_flatten(model.parameters()))
    return "+".join(sorted({str(array.dtype).removeprefix("mlx.core.") for _, array in arrays}))


def prepare_model(model: Any, *, path: str, plan: KernelConfig) -> dict[str, Any]:
    """Put the weights in the form this process's kernel path computes fastest; report what was done."""
    if plan.problem:
        raise RuntimeError(plan.problem)
    quantized = _quantized_layers(model)
    first = next(iter(quantized.values()), None)
    quantization = {"bits": first.bits, "group_size": first.group_size} if first is not None else None
    if plan.path != "optimized":
        return {
            "kernel_path": "stock",
            "blas": None,
            "weights_dtype": _weights_dtype(model),
            "quantization": quantization,
            "dequantized": False,
        }

    import mlx.core as mx

    # Floating parameters only (the default predicate): packed quantized weights stay integers. First, so
    # that dequantizing computes scale * q + bias in float32 instead of rounding it to bfloat16.
    model.set_dtype(mx.float32)
    dequantized = bool(quantized) and _float32_bytes(model, quantized) <= plan.dequantize_limit_bytes
    if dequantized:
        from mlx_lm.utils import dequantize_model

        dequantize_model(model)  # swaps the quantized layers for float ones, in place
    mx.eval(model.parameters())
    # The checkpoint's own arrays are free now: give their memory back rather than keep it cached.
    mx.clear_cache()
    return {
        "kernel_path": "optimized",
        "blas": plan.blas,
        "weights_dtype": _weights_dtype(model),
        "quantization": None if dequantized else quantization,
        "dequantized": dequantized,
    }


def expected_weights_bytes(path: str, on_disk: int, plan: KernelConfig) -> int:
    """About what ``prepare_model`` will leave in memory for a checkpoint of ``on_disk`` bytes: an estimate
    for a model not loaded yet. The optimized path doubles a bfloat16 checkpoint; a dequantized 4-bit one
    grows about 7x."""
    if plan.path != "optimized":
        return on_disk
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    quantization = config.get("quantization") or {}
    if quantization.get("bits"):
        bits, group_size = int(quantization["bits"]), int(quantization.get("group_size") or 64)
        # Per weight on disk: its bits plus a half-precision scale and bias per group.
        dequantized = int(on_disk * FLOAT32_BYTES / (bits / 8 + 4 / group_size))
        return dequantized if dequantized <= plan.dequantize_limit_bytes else on_disk
    stored = DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), 2)
    return on_disk * FLOAT32_BYTES // stored
