"""POST /v1/embeddings with the official openai client on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.live

FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
UNRELATED = "The new movie is awesome."


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from tests.model_builders import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def vectors(response: Any) -> np.ndarray:
    return np.array([item.embedding for item in sorted(response.data, key=lambda item: item.index)])


def test_one_string_gives_one_unit_vector_and_exact_usage(openai_client, minilm_model, minilm_tokenizer):
    response = openai_client.embeddings.create(model=minilm_model, input=FOOD, encoding_format="float")

    assert response.object == "list"
    assert response.model == minilm_model
    assert [item.index for item in response.data] == [0]
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (384,)
    assert abs(np.linalg.norm(vector) - 1) < 1e-4
    assert response.usage.prompt_tokens == len(minilm_tokenizer(FOOD)["input_ids"])
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_the_published_pair_scores_as_sentence_transformers_says_and_unrelated_text_lower(openai_client, minilm_model):
    food, bread, unrelated = vectors(
        openai_client.embeddings.create(model=minilm_model, input=[FOOD, BREAD, UNRELATED])
    )

    assert round(float(food @ bread), 3) == 0.755
    assert float(food @ bread) > float(food @ unrelated) + 0.5


def test_base64_and_float_encodings_carry_the_same_vector(openai_client, http, minilm_model):
    as_floats = http.post("/v1/embeddings", json={"model": minilm_model, "input": FOOD}).json()
    as_base64 = http.post(
        "/v1/embeddings", json={"model": minilm_model, "input": FOOD, "encoding_format": "base64"}
    ).json()

    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_floats["data"][0]["embedding"], atol=1e-7)
    # The openai client asks for base64 by default and decodes it: the same vector again.
    default = openai_client.embeddings.create(model=minilm_model, input=FOOD)
    assert np.allclose(default.data[0].embedding, decoded, atol=1e-7)


def test_token_arrays_embed_as_the_text_they_spell(openai_client, minilm_model, minilm_tokenizer):
    ids = [minilm_tokenizer.encode(text, add_special_tokens=False) for text in (FOOD, BREAD)]

    from_text = vectors(openai_client.embeddings.create(model=minilm_model, input=[FOOD, BREAD]))
    from_one_array = vectors(openai_client.embeddings.create(model=minilm_model, input=ids[0]))
    from_arrays = vectors(openai_client.embeddings.create(model=minilm_model, input=ids))

    assert np.allclose(from_one_array[0], from_text[0], atol=1e-5)
    assert np.allclose(from_arrays, from_text, atol=1e-5)


def test_dimensions_truncates_and_renormalises_up_to_the_models_size(openai_client, minilm_model):
    full = vectors(openai_client.embeddings.create(model=minilm_model, input=FOOD))[0]
    short = vectors(openai_client.embeddings.create(model=minilm_model, input=FOOD, dimensions=128))[0]

    assert short.shape == (128,)
    assert abs(np.linalg.norm(short) - 1) < 1e-4
    assert np.allclose(short, full[:128] / np.linalg.norm(full[:128]), atol=1e-5)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model=minilm_model, input=FOOD, dimensions=1000)
    assert caught.value.body["param"] == "dimensions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["fine", ""]}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": " ".join(["word"] * 600)}, "input[0]"),
        ({"input": [[999999999]]}, "input[0]"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": 42}, "input"),
        ({}, "input"),
    ],
)
def test_bad_inputs_are_400s_naming_the_field(http, minilm_model, body, param):
    response = http.post("/v1/embeddings", json={"model": minilm_model, **body})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_a_model_of_the_wrong_kind_is_a_400_saying_so(openai_client, minilm_model):
    with pytest.raises(openai.BadRequestError) as to_chat:
        openai_client.chat.completions.create(model=minilm_model, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as to_text_model:
        openai_client.embeddings.create(model="demo", input="hi")

    assert to_chat.value.code == "wrong_model_kind"
    assert "embedding model" in to_chat.value.message
    assert to_text_model.value.code == "wrong_model_kind"
    assert "/v1/chat/completions" in to_text_model.value.message


def test_an_unknown_model_is_a_404(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.embeddings.create(model="no-such-embedder", input="hi")
    assert caught.value.code == "model_not_found"


def test_concurrent_requests_share_forward_passes(live_hub, openai_client, minilm_model, http):
    openai_client.embeddings.create(model=minilm_model, input="warm up")  # loaded before the burst
    key = next(key for key, model in http.get("/v1/engine").json()["models"].items() if model["kind"] == "embedding")
    before = http.get("/v1/engine").json()["models"][key]["batches"]
    client = openai.AsyncOpenAI(base_url=f"{live_hub.base_url}/v1", api_key=live_hub.api_key, max_retries=0)

    async def burst() -> list[Any]:
        inputs = [[f"sentence {i} of request {r}" for i in range(32)] for r in range(16)]
        return await asyncio.gather(*(client.embeddings.create(model=minilm_model, input=batch) for batch in inputs))

    responses = asyncio.run(burst())

    assert all(len(response.data) == 32 for response in responses)
    passes = http.get("/v1/engine").json()["models"][key]["batches"] - before
    assert passes < 16  # fewer forward passes than requests: they were embedded together
    # Batched or not, each input's vector is what it gets alone.
    alone = vectors(openai_client.embeddings.create(model=minilm_model, input="sentence 3 of request 5"))[0]
    assert np.allclose(vectors(responses[5])[3], alone, atol=1e-5)
