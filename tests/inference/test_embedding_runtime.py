"""EmbeddingRuntime against the real all-MiniLM-L6-v2 weights that the test package ships."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engine.embedding_runtime import EmbeddingRuntime
from tests.model_builders import minilm_path

# sentence-transformers publishes these scores for all-MiniLM-L6-v2:
# the food/bread pair scores 0.7553, and the sbert.net quickstart
# (https://sbert.net/docs/sentence_transformer/usage/usage.html) gives 0.6660 for the weather pair.
FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
WEATHER = "The weather is lovely today."
SUNNY = "It's so sunny outside!"
STADIUM = "He drove to the stadium."


@pytest.fixture(scope="module")
def runtime() -> EmbeddingRuntime:
    return EmbeddingRuntime(str(minilm_path()))


def similarity(runtime: EmbeddingRuntime, first: str, second: str) -> float:
    vectors = runtime.embed([runtime.tokenize(first), runtime.tokenize(second)])
    return float(vectors[0] @ vectors[1])


def test_it_reports_the_models_shape_and_measured_weight_bytes(runtime):
    assert runtime.dimensions == 384
    assert runtime.max_tokens == 512  # max_position_embeddings and the tokenizer's model_max_length agree
    # 22.7M float32 parameters, measured from the loaded arrays.
    assert 85_000_000 < runtime.weights_bytes < 95_000_000


def test_it_returns_unit_float32_vectors(runtime):
    vectors = runtime.embed([runtime.tokenize(FOOD), runtime.tokenize(STADIUM)])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_it_matches_the_published_sentence_transformers_scores(runtime):
    assert round(similarity(runtime, FOOD, BREAD), 3) == 0.755
    assert round(similarity(runtime, WEATHER, SUNNY), 3) == 0.666


def test_similar_sentences_score_higher_than_unrelated_ones(runtime):
    related = similarity(runtime, WEATHER, SUNNY)
    unrelated = similarity(runtime, WEATHER, STADIUM)
    assert related > unrelated + 0.3
    assert abs(similarity(runtime, FOOD, "The stock market fell sharply on Tuesday.")) < 0.2


def test_a_padded_batch_gives_what_each_input_gives_alone(runtime):
    texts = [FOOD, "Hi", BREAD + " " + WEATHER + " " + STADIUM, SUNNY]
    batch = runtime.embed([runtime.tokenize(text) for text in texts])
    alone = np.stack([runtime.embed([runtime.tokenize(text)])[0] for text in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_it_frames_text_with_the_tokenizers_special_tokens(runtime):
    assert runtime.tokenize("hello world") == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]


def test_a_token_array_is_the_texts_tokens_and_gives_the_same_vector(runtime):
    content = runtime.tokenizer.encode(FOOD, add_special_tokens=False)
    assert runtime.tokenize(content) == runtime.tokenize(FOOD)
    # An array that already carries [CLS] ... [SEP] is used as it is, not framed twice.
    assert runtime.tokenize(runtime.tokenize(FOOD)) == runtime.tokenize(FOOD)
    from_ids, from_text = runtime.embed([runtime.tokenize(content), runtime.tokenize(FOOD)])
    np.testing.assert_allclose(from_ids, from_text, atol=1e-6)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([7592, 30522], "outside this model's vocabulary"),
        ([7592, -1], "outside this model's vocabulary"),
        ([7592, "2088"], "integer token ids"),
        ([7592, True], "integer token ids"),
        ([], "empty"),
        ("", "empty"),
    ],
)
def test_it_refuses_inputs_it_cannot_embed(runtime, item, message):
    with pytest.raises(ValueError, match=message):
        runtime.tokenize(item)


def test_it_refuses_an_input_longer_than_the_model_accepts_and_says_how_long(runtime):
    with pytest.raises(ValueError, match=r"602 tokens long .* at most 512"):
        runtime.tokenize("word " * 600)
    with pytest.raises(ValueError, match=r"513 tokens long"):
        runtime.tokenize([7592] * 511)  # 511 content tokens + [CLS] + [SEP]
    assert len(runtime.tokenize([7592] * 510)) == 512
    with pytest.raises(ValueError, match=r"600 tokens long"):
        runtime.embed([[101] + [7592] * 598 + [102]])


def test_it_never_downloads_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        EmbeddingRuntime(str(tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2"))
