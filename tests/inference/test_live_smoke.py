from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.live


def test_the_openai_client_lists_the_demo_model(live_hub):
    client = openai.OpenAI(base_url=f"{live_hub.base_url}/v1", api_key=live_hub.api_key)
    assert "demo" in [model.id for model in client.models.list()]
