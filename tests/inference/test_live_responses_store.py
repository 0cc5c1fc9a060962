"""Stored responses on a live server started with MLXHUB_RESPONSES_STORE=1: store, GET, DELETE, chaining with
previous_response_id and item_reference, and each user seeing only their own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveHub, start_hub, stop_hub
from tests.inference.test_live_errors import assert_openai_error
from tests.inference.test_live_responses import sse_events

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def store_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    hub = start_hub(tmp_path_factory.mktemp("responses-store-hub"), MLXHUB_RESPONSES_STORE="1")
    yield hub
    stop_hub(hub)


@pytest.fixture(scope="module")
def client(store_hub: LiveHub) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{store_hub.base_url}/v1", api_key=store_hub.api_key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(store_hub: LiveHub) -> Iterator[httpx.Client]:
    with store_hub.client() as client:
        yield client


@pytest.fixture(scope="module")
def other(store_hub: LiveHub) -> Iterator[httpx.Client]:
    """Another user's key, allowed the demo model."""
    script = (
        "from django.contrib.auth.models import User\n"
        "from mlxhub.accounts.models import Membership, Team\n"
        "from mlxhub.accounts.services import api_key_create\n"
        "team, _ = Team.objects.get_or_create(name='Others', slug='others')\n"
        "user = User.objects.create_user('oscar-other')\n"
        "Membership.objects.create(team=team, user=user, role='member')\n"
        "print(api_key_create(owner=user, name='other', team=team, allowed_models=['demo']).secret)\n"
    )
    secret = store_hub.manage("shell", "-c", script).stdout.strip().splitlines()[-1]
    with httpx.Client(base_url=store_hub.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as c:
        yield c


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex}"


def create(client: openai.OpenAI, **fields: Any) -> Any:
    return client.responses.create(model="demo", max_output_tokens=3, temperature=0, **fields)


def input_tokens(response: Any) -> int:
    assert response.usage is not None
    return int(response.usage.input_tokens)


def test_a_response_is_stored_and_read_back_as_it_was_answered(client: openai.OpenAI) -> None:
    response = create(client, input=unique("hello"))

    assert response.store is True
    again = client.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()


def test_a_streamed_response_is_stored_before_its_stream_ends(http: httpx.Client) -> None:
    body = {"model": "demo", "input": unique("hello"), "max_output_tokens": 3, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as streamed:
        final = sse_events(streamed.read().decode())[-1]["response"]
    stored = http.get(f"/v1/responses/{final['id']}")  # at once: no wait for a write to land

    assert stored.status_code == 200 and stored.json() == final
    assert final["store"] is True


def test_store_false_keeps_nothing(client: openai.OpenAI, http: httpx.Client) -> None:
    response = create(client, input="hello", store=False)

    assert response.store is False
    assert_openai_error(http.get(f"/v1/responses/{response.id}"), status=404)


def test_previous_response_id_continues_the_conversation_without_the_earlier_instructions(
    client: openai.OpenAI,
) -> None:
    question = unique("tell me about the river")
    first = create(client, input=question, instructions="be brief")
    second = create(client, input="and the sea?", previous_response_id=first.id)
    third = create(client, input="and the sky?", previous_response_id=second.id)

    history = [{"role": "user", "content": question}, first.output[0].model_dump(exclude_none=True)]
    explicit = create(client, input=[*history, {"role": "user", "content": "and the sea?"}], store=False)
    assert second.previous_response_id == first.id
    # As OpenAI does: the earlier turns come back, the earlier instructions do not.
    assert input_tokens(second) == input_tokens(explicit)
    assert second.usage.input_tokens_details.cached_tokens > 0  # the earlier turns are still in the prefix cache
    history += [{"role": "user", "content": "and the sea?"}, second.output[0].model_dump(exclude_none=True)]
    explicit = create(client, input=[*history, {"role": "user", "content": "and the sky?"}], store=False)
    assert input_tokens(third) == input_tokens(explicit)


def test_an_item_reference_brings_back_a_stored_output_item(client: openai.OpenAI) -> None:
    first = create(client, input=unique("hello"))
    message = first.output[0]
    referenced = create(client, input=[{"type": "item_reference", "id": message.id}, {"role": "user", "content": "ok"}])
    explicit = create(client, input=[message.model_dump(exclude_none=True), {"role": "user", "content": "ok"}])

    assert input_tokens(referenced) == input_tokens(explicit)


def test_another_users_response_is_not_found_anywhere(client: openai.OpenAI, other: httpx.Client) -> None:
    mine = create(client, input=unique("secret plans"))
    chained = {"model": "demo", "input": "go on", "previous_response_id": mine.id, "max_output_tokens": 1}
    referenced = {
        "model": "demo",
        "input": [{"type": "item_reference", "id": mine.output[0].id}],
        "max_output_tokens": 1,
    }

    assert_openai_error(other.get(f"/v1/responses/{mine.id}"), status=404)
    assert_openai_error(other.delete(f"/v1/responses/{mine.id}"), status=404)
    assert_openai_error(other.post("/v1/responses", json=chained), status=400, param="previous_response_id")
    assert_openai_error(other.post("/v1/responses", json=referenced), status=400, param="input[0].id")
    assert client.responses.retrieve(mine.id).id == mine.id  # still there for its owner


def test_a_deleted_response_is_gone(client: openai.OpenAI, http: httpx.Client) -> None:
    response = create(client, input=unique("hello"))

    deleted = http.delete(f"/v1/responses/{response.id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": response.id, "object": "response.deleted", "deleted": True}
    error = assert_openai_error(http.get(f"/v1/responses/{response.id}"), status=404)
    assert response.id in error["message"]
    assert_openai_error(http.delete(f"/v1/responses/{response.id}"), status=404)
    chained = {"model": "demo", "input": "go on", "previous_response_id": response.id}
    assert_openai_error(http.post("/v1/responses", json=chained), status=400, param="previous_response_id")


def test_the_stored_row_holds_the_conversation_and_the_audit_row_only_metadata(
    store_hub: LiveHub, client: openai.OpenAI
) -> None:
    secret = unique("my secret question")
    response = create(client, input=secret)
    script = (
        "from inference.models import StoredResponse; import json; "
        f"row = StoredResponse.objects.get(pk='{response.id}'); "
        "print(json.dumps([row.input_items, row.status, row.model]))"
    )
    items, status, model = json.loads(store_hub.manage("shell", "-c", script).stdout.splitlines()[-1])

    assert items == [{"type": "message", "role": "user", "content": secret}]
    assert (status, model) == ("incomplete", "demo")
    assert secret.split()[-1] not in store_hub.manage("dumpdata", "audit").stdout
