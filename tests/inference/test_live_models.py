"""The model endpoints, and a model registered while the server runs."""

from __future__ import annotations

import uuid

import openai
import pytest

pytestmark = pytest.mark.live


def test_retrieving_the_demo_model_describes_it(openai_client):
    model = openai_client.models.retrieve("demo")

    assert model.id == "demo"
    assert model.object == "model"
    assert model.owned_by == "mlxhub"
    assert model.created > 0
    assert model.model_extra["context_length"] == 2048


def test_retrieving_an_unknown_model_is_a_404_model_not_found(openai_client, http):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("no-such-model")

    assert caught.value.code == "model_not_found"
    response = http.get("/v1/models/no-such-model")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.headers["x-request-id"]


def test_a_model_registered_while_the_server_runs_is_served_at_once(live_hub, openai_client, tiny_model_dir):
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve(name)

    result = live_hub.manage("register_model", str(tiny_model_dir), "--name", name, check=False)

    assert result.returncode == 0, result.stderr
    assert name in result.stdout
    assert name in [model.id for model in openai_client.models.list()]
    assert openai_client.models.retrieve(name).id == name
    completion = openai_client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hello"}], max_tokens=3, temperature=0
    )
    assert completion.model == name
    assert completion.usage.completion_tokens == 3
    stream = openai_client.completions.create(model=name, prompt="hello", max_tokens=3, temperature=0, stream=True)
    assert [chunk.choices[0].finish_reason for chunk in stream][-1] == "length"
