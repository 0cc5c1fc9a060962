"""Build a small llama-architecture model locally: random weights and a
byte-level BPE tokenizer trained on generated English-like text, saved in the
Hugging Face layout that `mlx_lm.load` opens. Nothing is downloaded.

The rows of lm_head for special tokens and for lone non-printable bytes are
zeroed, so greedy decoding with random weights never picks them: a request
runs to max_tokens and every token decodes to visible text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    corpus_sentences: int
    pseudo_words: int
    max_position_embeddings: int


PRESETS: dict[str, Preset] = {
    # For the test suite: loads and decodes in milliseconds.
    "tiny": Preset(64, 2, 4, 2, 176, 512, 3000, 600, 2048),
    # For people trying MLX Hub out: still random, but a more realistic shape.
    "demo": Preset(256, 4, 4, 2, 704, 2048, 12000, 3000, 4096),
}

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ENGLISH = """
the of and to a in is it you that he was for on are with as his they be at one have this from or had
by hot word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father head stand own page
should country found answer school grow study still learn plant cover food sun four between state
keep eye never last let thought city tree cross farm hard start might story saw far sea draw left
late run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river car
feet care second book hello there how are you today model test
""".split()  # noqa: SIM905  (a word list reads better as text)

ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "br",
    "ch",
    "cl",
    "dr",
    "fl",
    "gr",
    "pl",
    "sh",
    "st",
    "th",
    "tr",
]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou"]
CODAS = ["", "", "b", "ck", "d", "g", "l", "m", "n", "nd", "ng", "nt", "r", "s", "st", "t"]
SUFFIXES = ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ness"]


def _pseudo_word(rng: random.Random) -> str:
    syllables = rng.choice([1, 2, 2, 3])
    word = "".join(rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS) for _ in range(syllables))
    return word + rng.choice(SUFFIXES)


def _corpus(n_sentences: int, n_pseudo: int, seed: int = 0) -> Iterator[str]:
    rng = random.Random(seed)
    lexicon = list(dict.fromkeys(ENGLISH + [_pseudo_word(rng) for _ in range(n_pseudo)]))
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(lexicon))]
    for _ in range(n_sentences):
        words = rng.choices(lexicon, weights=weights, k=rng.randint(5, 22))
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2025)))
        sentence = " ".join(words)
        yield sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "?", "!"])


def _train_tokenizer(out_dir: Path, preset: Preset) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=preset.vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(preset.corpus_sentences, preset.pseudo_words), trainer=trainer)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": preset.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special_map = {"bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>", "pad_token": "</s>"}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    return tokenizer


def _banned_token_ids(tokenizer: object) -> list[int]:
    vocab_size: int = tokenizer.get_vocab_size()  # type: ignore[attr-defined]
    banned = {tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}  # type: ignore[attr-defined]
    for token_id in range(vocab_size):
        text: str = tokenizer.decode([token_id], skip_special_tokens=False)  # type: ignore[attr-defined]
        if not text or "\ufffd" in text or any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
            banned.add(token_id)
    return sorted(banned)


def build_model(out_dir: Path, preset_name: str = "demo", *, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """Write a complete model folder to ``out_dir`` and return it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models.llama import Model, ModelArgs

    preset = PRESETS[preset_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(out_dir, preset)
    vocab_size = tokenizer.get_vocab_size()  # type: ignore[attr-defined]
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": preset.hidden_size,
        "num_hidden_layers": preset.num_hidden_layers,
        "num_attention_heads": preset.num_attention_heads,
        "num_key_value_heads": preset.num_key_value_heads,
        "intermediate_size": preset.intermediate_size,
        "vocab_size": vocab_size,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": preset.max_position_embeddings,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "bos_token_id": tokenizer.token_to_id("<s>"),  # type: ignore[attr-defined]
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),  # type: ignore[attr-defined]
        "torch_dtype": dtype,
    }
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(config))
    # mlx initialises embeddings as N(0, 1); real checkpoints are much smaller.
    model.model.embed_tokens.weight = model.model.embed_tokens.weight * 0.02
    mask = mx.ones((vocab_size, 1), dtype=model.lm_head.weight.dtype)
    mask[mx.array(_banned_token_ids(tokenizer))] = 0
    model.lm_head.weight = model.lm_head.weight * mask
    model.update(tree_map(lambda array: array.astype(getattr(mx, dtype)), model.parameters()))
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    # config.json last: its presence marks the folder complete.
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir
