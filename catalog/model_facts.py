"""What a model says about itself: facts read from config.json, tags, the repository name and the card.

Plain functions on plain data, shared by the folder inspector (local models) and the hub views (remote ones).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from catalog.constants import CARD_SUMMARY_CHARS, MEMORY_BUDGET_FRACTION, MEMORY_OVERHEAD_FACTOR
from catalog.models import ModelKind

_BITS_TAG = re.compile(r"^(\d+)-?bit$", re.I)
_NAME_QUANT = re.compile(r"[-_](\d+)-?bit(?:$|[-_])|[-_](bf16|fp16|fp32|f16|f32|mxfp4|nvfp4)(?:$|[-_])", re.I)
_WEIGHT_SUFFIXES = (".safetensors", ".npz", ".bin", ".gguf")


def architecture_of(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    if architectures:
        return str(architectures[0])
    return str(config.get("model_type") or "")


def kind_of(config: dict[str, Any], pipeline_tag: str | None = None) -> ModelKind:
    if "vision_config" in config or pipeline_tag == "image-text-to-text":
        return ModelKind.VISION
    architectures = [name for name in (config.get("architectures") or [config.get("model_type") or ""]) if name]
    if pipeline_tag in {"feature-extraction", "sentence-similarity"} or any(
        "Bert" in name or "Embedding" in name or name.lower() in {"bert", "xlm-roberta"} for name in architectures
    ):
        return ModelKind.EMBEDDING
    return ModelKind.TEXT


def quantization_of(config: dict[str, Any], *, tags: Iterable[str] = (), repo_id: str = "") -> str:
    """ "4-bit", "8-bit", "bf16" …: from the config, else the hub's tags, else the repository's name."""
    quantization = config.get("quantization") or config.get("quantization_config") or {}
    if isinstance(quantization, dict) and quantization.get("bits"):
        return f"{quantization['bits']}-bit"
    for tag in tags:
        if match := _BITS_TAG.match(tag):
            return f"{match.group(1)}-bit"
    if match := _NAME_QUANT.search(repo_id.split("/")[-1]):
        return f"{match.group(1)}-bit" if match.group(1) else match.group(2).lower()
    dtype = config.get("torch_dtype") or config.get("dtype") or ""
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype), str(dtype))


# The fields the engine's runtimes read for a model's context length, in their order
# (inference/engine/text.py, inference/engine/vision_runtime.py): the catalog must find the same number, since
# the profile hands it to the engine and the request's reservation is bounded by it.
CONTEXT_LENGTH_FIELDS = ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length")


def context_length_of(config: dict[str, Any], kind: str | None = None) -> int | None:
    """The model's context length as the engine reads it (a vision model's text part first); None: unknown."""
    text_config = config.get("text_config") or {}
    sections = (text_config, config) if kind == ModelKind.VISION else (config, text_config)
    for section in sections:
        for name in CONTEXT_LENGTH_FIELDS:
            value = section.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def facts_from_config(
    config: dict[str, Any], *, tags: Iterable[str] = (), repo_id: str = "", pipeline_tag: str | None = None
) -> dict[str, Any]:
    kind = kind_of(config, pipeline_tag)
    return {
        "architecture": architecture_of(config),
        "kind": kind,
        "quantization": quantization_of(config, tags=tags, repo_id=repo_id),
        "context_length": context_length_of(config, kind),
    }


def weights_bytes(files: Iterable[tuple[str, int]]) -> int:
    """The bytes that load into memory: the weight files, not the card or the tokenizer."""
    return sum(size for name, size in files if name.endswith(_WEIGHT_SUFFIXES))


def card_parts(readme: str) -> tuple[dict[str, str], str]:
    """The card's YAML front matter (flat keys only) and its first paragraph of prose."""
    metadata: dict[str, str] = {}
    body = readme
    if match := re.match(r"^---\s*\n(.*?)\n---\s*\n", readme, re.S):
        body = readme[match.end() :]
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "-")) and value.strip():
                metadata[key.strip()] = value.strip().strip("'\"")
    paragraph: list[str] = []
    in_code = False
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code or stripped.startswith(("#", "<", "!", "|")):
            if paragraph:
                break
            continue
        if not stripped:
            if paragraph:
                break
            continue
        paragraph.append(stripped)
    summary = " ".join(paragraph)
    if len(summary) > CARD_SUMMARY_CHARS:
        summary = summary[: CARD_SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return metadata, summary


def total_memory_bytes() -> int:
    """Physical memory of this machine (no psutil: sysconf, else /proc/meminfo)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_budget_bytes(configured: int) -> int:
    return configured or int(total_memory_bytes() * MEMORY_BUDGET_FRACTION)


def fits_memory(weights: int, budget: int) -> bool:
    return weights * MEMORY_OVERHEAD_FACTOR <= budget
