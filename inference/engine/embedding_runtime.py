"""Sentence embeddings with mlx-embeddings: tokenize, batch, pool, normalise.

Plain Python, no Django. Every method runs MLX work on the calling thread (the
engine thread): load the model on the thread that will embed with it, and start
no thread here.

Pooling and normalisation follow the folder's sentence-transformers files
(``modules.json`` and the Pooling module's ``config.json``), which is how
sentence-transformers itself computes the published vectors; a folder without
them gets mlx-embeddings' own ``text_embeds`` (mean pooling + L2 for BERT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

# Used when neither the config nor the tokenizer states a usable input length.
DEFAULT_MAX_TOKENS = 512
# Tokenizers without a limit report a huge sentinel (int(1e30)) as model_max_length.
UNBOUNDED_TOKENIZER_LENGTH = 1_000_000
SUPPORTED_POOLING = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken")
# sentence-transformers' Pooling config keys and the mode each turns on.
POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# A text that tokenizes to one ordinary token in any vocabulary, used to find where the
# tokenizer puts its special tokens around a text.
PROBE_TEXT = "a"


@dataclass(frozen=True)
class Pooling:
    mode: str | None  # one of SUPPORTED_POOLING; None: the model's own text_embeds
    normalize: bool


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _sentence_transformers_pooling(folder: Path) -> Pooling:
    """What sentence-transformers does after the transformer, from the folder's module list."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Pooling(mode=None, normalize=True)
    mode: str | None = None
    normalize = False
    for module in _read_json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            continue
        if kind == "Normalize":
            normalize = True
        elif kind == "Pooling":
            mode = _pooling_mode(_read_json(folder / module.get("path", "") / "config.json"))
        else:
            # A Dense or other projection changes the vectors; without it they would be quietly wrong.
            raise ValueError(f"Unsupported sentence-transformers module {kind!r} in {modules_file}.")
    return Pooling(mode=mode, normalize=normalize)


def _pooling_mode(config: dict[str, Any]) -> str:
    if config.get("include_prompt") is False:
        raise ValueError("Pooling that excludes the prompt (include_prompt: false) is not supported.")
    modes = [mode for key, mode in POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1 or modes[0] not in SUPPORTED_POOLING:
        raise ValueError(f"Unsupported pooling {modes or 'none'}; supported: one of {', '.join(SUPPORTED_POOLING)}.")
    return modes[0]


def _pool(hidden: mx.array, mask: mx.array, mode: str) -> mx.array:
    """Pool right-padded hidden states (batch, length, dims) under mask (batch, length)."""
    weights = mask.astype(hidden.dtype)[..., None]
    lengths = mx.maximum(weights.sum(axis=1), 1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        return (hidden * weights).sum(axis=1) / lengths
    if mode == "mean_sqrt_len":
        return (hidden * weights).sum(axis=1) / mx.sqrt(lengths)
    if mode == "max":
        return mx.where(weights > 0, hidden, mx.array(-mx.inf, dtype=hidden.dtype)).max(axis=1)
    last = (mask.sum(axis=1) - 1).astype(mx.int32)  # lasttoken: right padding puts it at length - 1
    return mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]


def _l2_normalize(vectors: mx.array) -> mx.array:
    return vectors / mx.maximum(mx.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class EmbeddingRuntime:
    """One loaded embedding model.

    ``tokenize`` turns an input into the exact token ids the model sees; ``embed``
    runs one forward pass for a batch of them.
    """

    def __init__(self, path: str) -> None:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            # mlx_embeddings.utils.load treats a missing folder as a Hub repo id and downloads it.
            raise FileNotFoundError(f"{folder} is not a model folder (no config.json).")
        from mlx_embeddings.utils import load

        self.path = str(folder)
        self.pooling = _sentence_transformers_pooling(folder)
        self.model, self.tokenizer = load(self.path)
        if not hasattr(self.tokenizer, "encode"):
            raise ValueError(f"{folder} loads a processor, not a text tokenizer: not a text embedding model.")
        parameters = cast(list[tuple[str, mx.array]], tree_flatten(self.model.parameters()))
        mx.eval([array for _, array in parameters])
        self.weights_bytes = int(sum(array.nbytes for _, array in parameters))

        config = _read_json(folder / "config.json")
        self.vocab_size = len(self.tokenizer.get_vocab())
        if isinstance(config.get("vocab_size"), int):
            # Ids past the embedding table would index out of range in the model.
            self.vocab_size = min(self.vocab_size, int(config["vocab_size"]))
        limits = (
            [int(config["max_position_embeddings"])] if isinstance(config.get("max_position_embeddings"), int) else []
        )
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < UNBOUNDED_TOKENIZER_LENGTH:
            limits.append(tokenizer_limit)
        self.max_tokens = min(limits) if limits else DEFAULT_MAX_TOKENS

        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        self.pad_id = int(pad_id) if isinstance(pad_id, int) else 0
        self._prefix, self._suffix = self._special_token_frame()
        self.dimensions = int(self.embed([self.tokenize(PROBE_TEXT)]).shape[1])

    def _special_token_frame(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text ([CLS] and [SEP] for BERT)."""
        framed = self.tokenizer.encode(PROBE_TEXT, add_special_tokens=True, verbose=False)
        plain = self.tokenizer.encode(PROBE_TEXT, add_special_tokens=False, verbose=False)
        for start in range(len(framed) - len(plain) + 1):
            if framed[start : start + len(plain)] == plain:
                return list(framed[:start]), list(framed[start + len(plain) :])
        return [], []

    def tokenize(self, item: str | list[int]) -> list[int]:
        """The ids the model embeds for one input, special tokens included.

        A string is tokenized as sentence-transformers does. A token array (the OpenAI
        ``input: [[ids...]]`` form) holds the text's own tokens, as
        ``tokenizer.encode(text, add_special_tokens=False)`` gives them: the tokenizer's
        special tokens are added around it, so ids and text give the same vector. An array
        that already starts and ends with those special tokens is taken as it is.
        Raises ValueError for an empty input, an id outside the vocabulary, or an input
        longer than ``max_tokens``.
        """
        if isinstance(item, str):
            if not item:
                raise ValueError("An input is empty; embeddings need at least one character.")
            ids = list(self.tokenizer.encode(item, add_special_tokens=True, verbose=False))
        else:
            ids = self._framed(self._validated_ids(item))
        self._check_length(ids)
        return ids

    def _validated_ids(self, item: list[int]) -> list[int]:
        if not item:
            raise ValueError("A token array is empty; embeddings need at least one token.")
        for token in item:
            if isinstance(token, bool) or not isinstance(token, int):
                raise ValueError(f"Token arrays hold integer token ids; got {token!r}.")
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"Token id {token} is outside this model's vocabulary (0 to {self.vocab_size - 1}).")
        return list(item)

    def _framed(self, ids: list[int]) -> list[int]:
        prefix, suffix = self._prefix, self._suffix
        already_framed = len(ids) >= len(prefix) + len(suffix) and ids[: len(prefix)] == prefix
        if already_framed and (not suffix or ids[-len(suffix) :] == suffix):
            return ids
        return [*prefix, *ids, *suffix]

    def _check_length(self, ids: list[int]) -> None:
        if len(ids) > self.max_tokens:
            raise ValueError(
                f"An input is {len(ids)} tokens long (special tokens included); "
                f"this model accepts at most {self.max_tokens} tokens per input."
            )

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        """Embed tokenized inputs in one forward pass: float32, shape (len(batch), dimensions).

        Inputs are right-padded to the longest and masked, so each row equals the input
        embedded alone (to float rounding, about 1e-6).
        """
        if not batch:
            raise ValueError("Nothing to embed.")
        for ids in batch:
            if not ids:
                raise ValueError("An input is empty; embeddings need at least one token.")
            self._check_length(ids)
        longest = max(len(ids) for ids in batch)
        input_ids = mx.array([ids + [self.pad_id] * (longest - len(ids)) for ids in batch], dtype=mx.int32)
        mask = mx.array([[1] * len(ids) + [0] * (longest - len(ids)) for ids in batch], dtype=mx.int32)
        output = self.model(input_ids, attention_mask=mask)
        if self.pooling.mode is None or getattr(output, "last_hidden_state", None) is None:
            vectors = output.text_embeds
        else:
            vectors = _pool(output.last_hidden_state.astype(mx.float32), mask, self.pooling.mode)
            if self.pooling.normalize:
                vectors = _l2_normalize(vectors)
        vectors = vectors.astype(mx.float32)
        mx.eval(vectors)
        return np.array(vectors, dtype=np.float32)
