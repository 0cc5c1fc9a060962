"""The official openai and anthropic clients → a live MLX Hub → fake upstreams (or the local tiny model)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import LiveHub, free_port, start_hub, stop_hub
from tests.routing.fakes import LONG_PIECE, TEXT_PIECES, TOOL_ARGUMENTS, FakeUpstream

pytestmark = pytest.mark.live

UPSTREAM_SECRET = "sk-upstream-secret-value-9876"
FAST_ROUTING = {
    "MLXHUB_ROUTING_RETRY_ATTEMPTS": "2",
    "MLXHUB_ROUTING_RETRY_INITIAL_SECONDS": "0.01",
    "MLXHUB_ROUTING_RETRY_MAX_SECONDS": "0.05",
    "MLXHUB_ROUTING_BREAKER_FAILURES": "2",
    "MLXHUB_ROUTING_BREAKER_PAUSE_SECONDS": "1",
    "MLXHUB_ROUTING_READ_TIMEOUT": "1",
}
WEATHER_TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    hub = start_hub(tmp_path_factory.mktemp("routing-hub"), **FAST_ROUTING)
    yield hub
    stop_hub(hub)


@pytest.fixture(scope="module")
def control(hub: LiveHub) -> Iterator[httpx.Client]:
    # The bootstrap key's owner is a superuser: an admin of the control API.
    with httpx.Client(base_url=f"{hub.base_url}/api/routing", headers={"Authorization": f"Bearer {hub.api_key}"},
                      timeout=30) as client:  # fmt: skip
        yield client


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("openai").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("anthropic").start()
    yield fake
    fake.stop()


def add_credential(control: httpx.Client, name: str, provider: str, base_url: str) -> int:
    body = {"name": name, "provider": provider, "base_url": base_url, "secret": UPSTREAM_SECRET}
    response = control.post("/credentials/", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def add_rule(control: httpx.Client, name: str, **fields: Any) -> None:
    response = control.post("/rules/", json={"name": name, "pattern": name, **fields})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def routes(hub: LiveHub, control: httpx.Client, fake_openai: FakeUpstream, fake_anthropic: FakeUpstream) -> None:
    oa = add_credential(control, "fake-openai", "openai-compatible", fake_openai.base_url)
    an = add_credential(control, "fake-anthropic", "anthropic", fake_anthropic.base_url)
    add_rule(control, "to-openai", target_credential=oa, target_model="gpt-up")
    add_rule(control, "to-anthropic", target_credential=an, target_model="claude-up")
    refused = add_credential(control, "refused", "openai-compatible", f"http://127.0.0.1:{free_port()}/v1")
    demo = profile_id(hub, "demo")
    add_rule(control, "cloud-then-local", target_credential=refused, target_model="x",
             fallbacks=[{"position": 0, "target_profile": demo}])  # fmt: skip
    hub.manage("shell", "-c", "from catalog.models import LocalModel, Profile; "
               "Profile.objects.create(name='broken', local_model=LocalModel.objects.create("
               "repo_id='local/broken', path='/nonexistent/broken-model'))")  # fmt: skip
    add_rule(control, "unloadable-then-cloud", target_profile=profile_id(hub, "broken"),
             fallbacks=[{"position": 0, "target_credential": oa, "target_model": "gpt-fallback"}])  # fmt: skip
    flaky_fake = FakeUpstream("openai").start()
    flaky = add_credential(control, "flaky", "openai-compatible", flaky_fake.base_url)
    add_rule(control, "flaky", target_credential=flaky, target_model="gpt-flaky")
    slow = add_credential(control, "slow", "openai-compatible", fake_openai.base_url)
    add_rule(control, "slow-then-local", target_credential=slow, target_model="gpt-slow",
             fallbacks=[{"position": 0, "target_profile": demo}])  # fmt: skip
    hub.flaky_fake = flaky_fake  # type: ignore[attr-defined]


def profile_id(hub: LiveHub, name: str) -> int:
    out = hub.manage("shell", "-c", f"from catalog.models import Profile; print(Profile.objects.get(name='{name}').pk)")
    return int(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def oai(hub: LiveHub, routes: None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{hub.base_url}/v1", api_key=hub.api_key, max_retries=0, timeout=30)


@pytest.fixture
def claude(hub: LiveHub, routes: None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=hub.base_url, api_key=hub.api_key, max_retries=0, timeout=30)


def test_an_openai_client_reaches_an_openai_upstream_through_a_rule(
    oai: openai.OpenAI, fake_openai: FakeUpstream
) -> None:
    fake_openai.reset()
    raw = oai.chat.completions.with_raw_response.create(
        model="to-openai", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    completion = raw.parse()
    assert raw.headers["x-mlxhub-backend"] == "fake-openai"
    assert completion.choices[0].message.content == "".join(TEXT_PIECES)
    assert completion.model == "to-openai"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    seen = fake_openai.seen[-1]
    assert seen.body["model"] == "gpt-up"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"

    stream = oai.chat.completions.create(
        model="to-openai", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(TEXT_PIECES)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11


def test_text_completions_and_embeddings_reach_an_openai_shaped_upstream(
    hub: LiveHub, oai: openai.OpenAI, fake_openai: FakeUpstream
) -> None:
    fake_openai.reset()
    completion = oai.completions.create(model="to-openai", prompt="say hi", max_tokens=8)
    assert completion.choices[0].text == "".join(TEXT_PIECES)
    assert completion.model == "to-openai"
    assert fake_openai.seen[-1].path.endswith("/v1/completions")
    assert fake_openai.seen[-1].body["model"] == "gpt-up"

    chunks = list(oai.completions.create(model="to-openai", prompt="say hi", stream=True,
                                         stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == "".join(TEXT_PIECES)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

    raw = oai.embeddings.with_raw_response.create(model="to-openai", input=["a", "b"], encoding_format="float")
    embeddings = raw.parse()
    assert raw.headers["x-mlxhub-backend"] == "fake-openai"
    assert [item.embedding for item in embeddings.data] == [[0.0, 0.5, -0.5], [1.0, 0.5, -0.5]]
    assert embeddings.model == "to-openai"
    assert embeddings.usage.prompt_tokens == 6
    assert fake_openai.seen[-1].path.endswith("/v1/embeddings")


def test_text_completions_and_embeddings_to_an_anthropic_upstream_are_400s_saying_why(
    oai: openai.OpenAI, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.reset()
    with pytest.raises(openai.BadRequestError) as completions:
        oai.completions.create(model="to-anthropic", prompt="hi", max_tokens=8)
    with pytest.raises(openai.BadRequestError) as embeddings:
        oai.embeddings.create(model="to-anthropic", input="hi")

    assert completions.value.code == embeddings.value.code == "unsupported_backend"
    assert "no embeddings endpoint" in embeddings.value.message
    assert fake_anthropic.seen == []


def test_an_openai_client_streams_from_an_anthropic_upstream_with_tool_calls_translated(
    oai: openai.OpenAI, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.reset()
    stream = oai.chat.completions.create(
        model="to-anthropic",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        temperature=1.5,
    )
    chunks = list(stream)
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "weather"
    assert "".join(call.function.arguments or "" for call in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = fake_anthropic.seen[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == UPSTREAM_SECRET
    assert sent.body["system"] == "Be brief."
    assert sent.body["temperature"] == 1.0
    assert sent.body["tools"][0]["name"] == "weather"

    completion = oai.chat.completions.create(model="to-anthropic", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "".join(TEXT_PIECES)
    assert completion.choices[0].finish_reason == "stop"


def test_an_anthropic_client_streams_from_an_openai_upstream(
    claude: anthropic.Anthropic, fake_openai: FakeUpstream
) -> None:
    fake_openai.reset()
    with claude.messages.stream(
        model="to-openai", max_tokens=16, system="Be brief.", messages=[{"role": "user", "content": "hi"}],
        stop_sequences=["END"],
    ) as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert message.content[0].text == "".join(TEXT_PIECES)  # type: ignore[union-attr]
    assert message.usage.output_tokens == 4
    sent = fake_openai.seen[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["END"]

    tool = {"name": "weather", "input_schema": {"type": "object"}}
    answer = claude.messages.create(model="to-openai", max_tokens=16, tools=[tool],  # type: ignore[list-item]
                                    messages=[{"role": "user", "content": "weather?"}])  # fmt: skip
    assert answer.stop_reason == "tool_use"
    assert answer.content[0].input == TOOL_ARGUMENTS  # type: ignore[union-attr]


def test_an_anthropic_client_reaches_an_anthropic_upstream_unchanged(
    claude: anthropic.Anthropic, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.reset()
    with claude.messages.stream(
        model="to-anthropic", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "".join(TEXT_PIECES)
    assert fake_anthropic.seen[-1].body["model"] == "claude-up"
    count = claude.messages.count_tokens(model="to-anthropic", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == 42


def test_an_anthropic_client_streams_a_message_from_the_local_model(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="demo", max_tokens=8, messages=[{"role": "user", "content": "hello"}]) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert "content_block_delta" in kinds or message.stop_reason == "end_turn"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert message.stop_reason in ("max_tokens", "end_turn")
    assert message.usage.output_tokens >= 1
    assert message.usage.input_tokens > 0

    answer = claude.messages.create(model="demo", max_tokens=4, messages=[{"role": "user", "content": "hello"}])
    assert answer.type == "message" and answer.role == "assistant"
    assert answer.usage.output_tokens >= 1
    counted = claude.messages.count_tokens(model="demo", messages=[{"role": "user", "content": "hello"}])
    # Anthropic counts prompt tokens served from the cache apart; count_tokens counts them all.
    assert counted.input_tokens == answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0)


def test_messages_errors_come_back_in_anthropics_shape(hub: LiveHub, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    response = httpx.post(f"{hub.base_url}/v1/messages", headers={"x-api-key": hub.api_key},
                          json={"model": "demo", "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]
    tool = {"name": "weather", "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError, match="not among the tools") as unknown_tool:
        claude.messages.create(model="demo", max_tokens=4, tools=[tool],  # type: ignore[list-item]
                               tool_choice={"type": "tool", "name": "missing"},
                               messages=[{"role": "user", "content": "x"}])  # fmt: skip
    assert unknown_tool.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_500_is_retried_and_the_client_never_sees_it(oai: openai.OpenAI, fake_openai: FakeUpstream) -> None:
    fake_openai.reset("500")
    completion = oai.chat.completions.create(model="to-openai", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "".join(TEXT_PIECES)
    assert len(fake_openai.seen) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_an_upstream_refusing_our_credential_is_a_502_that_keeps_its_answer(
    oai: openai.OpenAI, fake_openai: FakeUpstream, status: int
) -> None:
    fake_openai.reset(str(status))
    with pytest.raises(openai.APIStatusError) as refused:
        oai.chat.completions.create(model="to-openai", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 502
    assert refused.value.code == "upstream_auth_error"
    assert UPSTREAM_SECRET[-4:] not in refused.value.response.text and "incorrect key" not in refused.value.message
    assert len(fake_openai.seen) == 1  # not retried: the same credential would be refused again


def test_an_anthropic_upstream_refusing_our_credential_is_a_502_in_anthropics_shape(
    claude: anthropic.Anthropic, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.reset("401")
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude.messages.create(model="to-anthropic", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 502
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "refused MLX Hub's credential" in body["error"]["message"]
    assert UPSTREAM_SECRET[-4:] not in refused.value.response.text
    fake_anthropic.reset()


def test_the_circuit_opens_after_repeated_failures_and_closes_after_the_pause(hub: LiveHub, oai: openai.OpenAI) -> None:
    flaky: FakeUpstream = hub.flaky_fake  # type: ignore[attr-defined]
    flaky.reset(*["500"] * 10)
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    assert len(flaky.seen) == 2  # two attempts: the breaker's threshold
    with pytest.raises(openai.APIStatusError) as paused:
        oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    assert paused.value.status_code == 503
    assert len(flaky.seen) == 2  # open: not even tried
    flaky.reset()
    time.sleep(1.1)
    assert oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}]).choices
    assert oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}]).choices
    assert len(flaky.seen) == 2  # the probe closed it again


def test_a_refused_cloud_upstream_falls_back_to_the_local_profile(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="cloud-then-local", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert raw.headers["x-mlxhub-backend"] == "local"
    assert raw.parse().usage.completion_tokens >= 1  # type: ignore[union-attr]


def test_a_hanging_upstream_times_out_and_falls_back_to_the_local_profile(
    oai: openai.OpenAI, fake_openai: FakeUpstream
) -> None:
    fake_openai.reset("hang", "hang")
    raw = oai.chat.completions.with_raw_response.create(
        model="slow-then-local", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert raw.headers["x-mlxhub-backend"] == "local"


def test_a_local_model_that_cannot_load_falls_back_to_the_cloud(oai: openai.OpenAI, fake_openai: FakeUpstream) -> None:
    fake_openai.reset()
    raw = oai.chat.completions.with_raw_response.create(
        model="unloadable-then-cloud", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-mlxhub-backend"] == "fake-openai"
    assert fake_openai.seen[-1].body["model"] == "gpt-fallback"


def test_a_streamed_event_longer_than_any_read_buffer_is_relayed_whole(
    oai: openai.OpenAI, fake_openai: FakeUpstream
) -> None:
    fake_openai.reset("long")
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in oai.chat.completions.create(
            model="to-openai", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        if chunk.choices
    ]
    assert "".join(pieces) == LONG_PIECE + "".join(TEXT_PIECES)


def test_a_failure_after_streaming_began_ends_the_stream_with_an_error_not_a_retry(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_openai: FakeUpstream, fake_anthropic: FakeUpstream
) -> None:
    fake_openai.reset("drop")
    received = []
    with pytest.raises(openai.APIError):
        for chunk in oai.chat.completions.create(
            model="to-openai", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk)
    assert received  # bytes had reached the client before the failure
    assert len(fake_openai.seen) == 1

    fake_anthropic.reset("drop")
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(
            model="to-anthropic", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        list(stream)
    assert len(fake_anthropic.seen) == 1


def test_audit_rows_name_the_backend_and_no_secret_reaches_the_logs(hub: LiveHub, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="to-anthropic", messages=[{"role": "user", "content": "hi"}])
    script = ("from audit.models import AuditLog; "
              "print(sorted(set(AuditLog.objects.values_list('endpoint', 'backend'))))")  # fmt: skip
    deadline = time.monotonic() + 15
    rows = ""
    while time.monotonic() < deadline:
        rows = hub.manage("shell", "-c", script).stdout
        if "fake-anthropic" in rows and "'messages'" in rows:
            break
        time.sleep(0.5)
    assert "('chat.completions', 'fake-anthropic')" in rows
    assert "('messages', 'fake-openai')" in rows
    assert "('messages', 'local')" in rows
    assert UPSTREAM_SECRET not in hub.log()
    dump = hub.manage("dumpdata", "audit").stdout
    assert UPSTREAM_SECRET not in dump


def test_a_hub_that_relayed_stops_cleanly_closing_its_upstream_connections(
    tmp_path: Path, fake_openai: FakeUpstream
) -> None:
    hub = start_hub(tmp_path / "relaying-hub", server="mlxhub.web")
    try:
        with httpx.Client(base_url=f"{hub.base_url}/api/routing", headers={"Authorization": f"Bearer {hub.api_key}"},
                          timeout=30) as control:  # fmt: skip
            credential = add_credential(control, "fake-openai", "openai-compatible", fake_openai.base_url)
            add_rule(control, "to-openai", target_credential=credential, target_model="gpt-up")
        fake_openai.reset()
        client = openai.OpenAI(base_url=f"{hub.base_url}/v1", api_key=hub.api_key, max_retries=0, timeout=30)
        client.chat.completions.create(model="to-openai", messages=[{"role": "user", "content": "hi"}])
        assert len(fake_openai.seen) == 1  # a kept-alive connection to the upstream is now open
    finally:
        stop_hub(hub)
    log = hub.log_path.read_text(errors="replace")
    assert hub.process.returncode == 0, log[-3000:]
    assert "exiting with 0" in log  # the drain ran
    assert "Unclosed" not in log, log[-3000:]
