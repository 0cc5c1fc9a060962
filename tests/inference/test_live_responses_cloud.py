"""POST /v1/responses routed to cloud targets, with the official openai client against a live hub and local fakes:
relayed as is to an "openai" provider (a Responses fake here), translated to chat completions for an
OpenAI-compatible server and for Anthropic (FakeUpstream), streamed and whole."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveHub, start_hub, stop_hub
from tests.inference.test_live_errors import assert_openai_error
from tests.routing.fakes import TEXT_PIECES, TOOL_ARGUMENTS, FakeUpstream
from tests.routing.test_live_routing import UPSTREAM_SECRET, add_credential, add_rule

pytestmark = pytest.mark.live

WEATHER = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
FAKE_TEXT = "Hello from OpenAI"


@dataclass
class FakeResponses:
    """OpenAI's Responses endpoint, answering text (or a call when tools are offered), with its own ids."""

    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    count: int = 0

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def response(self, body: dict[str, Any], status: str) -> dict[str, Any]:
        self.count += 1
        key = f"{self.count:048x}"
        if body.get("tools"):
            item = {"id": f"fc_{key}", "type": "function_call", "status": "completed", "call_id": "call_up",
                    "name": "weather", "arguments": json.dumps(TOOL_ARGUMENTS)}  # fmt: skip
        else:
            part = {"type": "output_text", "text": FAKE_TEXT, "annotations": [], "logprobs": []}
            item = {"id": f"msg_{key}", "type": "message", "status": "completed", "role": "assistant",
                    "content": [part]}  # fmt: skip
        usage = {"input_tokens": 13, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                 "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18}  # fmt: skip
        return {"id": f"resp_{key}", "object": "response", "created_at": 1, "status": status, "model": body["model"],
                "output": [item] if status == "completed" else [], "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"), "metadata": {}, "parallel_tool_calls": True,
                "temperature": 1.0, "tool_choice": "auto", "tools": body.get("tools") or [], "top_p": 1.0,
                "store": True, "usage": usage if status == "completed" else None}  # fmt: skip

    def start(self) -> FakeResponses:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                final = fake.response(body, "completed")
                if not body.get("stream"):
                    data = json.dumps(final).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                item = final["output"][0]
                added = {**item, "status": "in_progress"}
                opening = {**final, "status": "in_progress", "output": [], "usage": None}
                events: list[dict[str, Any]] = [
                    {"type": "response.created", "response": opening},
                    {"type": "response.in_progress", "response": opening},
                    {"type": "response.output_item.added", "output_index": 0, "item": added},
                    {"type": "response.output_item.done", "output_index": 0, "item": item},
                    {"type": "response.completed", "response": final},
                ]
                for number, event in enumerate(events):
                    event["sequence_number"] = 100 + number  # the upstream's own numbering, passed through
                    self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    started = {"responses": FakeResponses().start(), "chat": FakeUpstream("openai").start(),
               "anthropic": FakeUpstream("anthropic").start()}  # fmt: skip
    yield started
    for fake in started.values():
        if fake.server is not None:
            fake.server.shutdown()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, Any]) -> Iterator[LiveHub]:
    hub = start_hub(tmp_path_factory.mktemp("responses-cloud-hub"), MLXHUB_RESPONSES_STORE="1",
                    MLXHUB_ROUTING_RETRY_ATTEMPTS="1")  # fmt: skip
    with httpx.Client(base_url=f"{hub.base_url}/api/routing", headers={"Authorization": f"Bearer {hub.api_key}"},
                      timeout=30) as control:  # fmt: skip
        relay = add_credential(control, "fake-openai-responses", "openai", fakes["responses"].base_url)
        chat = add_credential(control, "fake-chat", "openai-compatible", fakes["chat"].base_url)
        claude = add_credential(control, "fake-claude", "anthropic", fakes["anthropic"].base_url)
        add_rule(control, "to-openai", target_credential=relay, target_model="gpt-up")
        add_rule(control, "to-chat", target_credential=chat, target_model="chat-up")
        add_rule(control, "to-claude", target_credential=claude, target_model="claude-up")
    yield hub
    stop_hub(hub)


@pytest.fixture(scope="module")
def client(hub: LiveHub) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{hub.base_url}/v1", api_key=hub.api_key, max_retries=0, timeout=30)


def test_an_openai_target_gets_the_responses_body_as_sent(client: openai.OpenAI, fakes: dict[str, Any]) -> None:
    raw = client.responses.with_raw_response.create(
        model="to-openai", input="hi", instructions="be brief", include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"}, top_logprobs=2, extra_body={"client_metadata": {"a": "b"}},
    )  # fmt: skip
    response = raw.parse()

    path, headers, body = fakes["responses"].seen[-1]
    assert path == "/v1/responses" and headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert body["model"] == "gpt-up" and body["input"] == "hi" and body["instructions"] == "be brief"
    # What OpenAI honours passes through untouched (a local model would refuse top_logprobs).
    assert (body["include"], body["reasoning"], body["top_logprobs"]) == (
        ["reasoning.encrypted_content"],
        {"effort": "low"},
        2,
    )
    assert body["client_metadata"] == {"a": "b"}
    assert raw.headers["x-mlxhub-backend"] == "fake-openai-responses"
    assert response.model == "to-openai" and response.output_text == FAKE_TEXT and response.status == "completed"
    assert response.store is True  # stored here, under OpenAI's id


def test_an_openai_targets_stream_is_relayed_event_by_event(client: openai.OpenAI) -> None:
    with client.responses.stream(model="to-openai", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()

    assert [event.sequence_number for event in events] == [100, 101, 102, 103, 104]
    assert final.output_text == FAKE_TEXT and final.model == "to-openai"


def test_a_relayed_response_is_stored_and_chained_from_mlx_hubs_store(
    client: openai.OpenAI, fakes: dict[str, Any]
) -> None:
    first = client.responses.create(model="to-openai", input="hi")
    assert client.responses.retrieve(first.id).output_text == FAKE_TEXT
    second = client.responses.create(model="to-openai", input="more", previous_response_id=first.id)

    sent = fakes["responses"].seen[-1][2]
    assert "previous_response_id" not in sent  # OpenAI is never asked for a response it may not have
    assert [item.get("role") or item["type"] for item in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][1]["content"][0]["text"] == FAKE_TEXT
    assert second.previous_response_id == first.id


@pytest.mark.parametrize(("model", "backend", "seen_path"), [("to-chat", "chat", "/v1/chat/completions"),
                                                             ("to-claude", "anthropic", "/v1/messages")])  # fmt: skip
def test_a_chat_or_anthropic_target_answers_in_responses_form(
    client: openai.OpenAI, fakes: dict[str, Any], model: str, backend: str, seen_path: str
) -> None:
    fake: FakeUpstream = fakes[backend]
    fake.reset()
    whole = client.responses.create(model=model, input="hi", instructions="be brief", max_output_tokens=20)
    with client.responses.stream(model=model, input="hi", instructions="be brief") as stream:
        events = list(stream)
        streamed = stream.get_final_response()

    assert [seen.path for seen in fake.seen] == [seen_path, seen_path]
    sent = fake.seen[0].body
    if backend == "chat":
        assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        assert sent["max_tokens"] == 20
        assert fake.seen[1].body["stream_options"] == {"include_usage": True}
    else:
        assert sent["system"] == "be brief" and sent["max_tokens"] == 20
    for response in (whole, streamed):
        assert response.status == "completed" and response.model == model
        assert response.output_text == "".join(TEXT_PIECES)
        assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (11, 4)
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


@pytest.mark.parametrize(("model", "call_id"), [("to-chat", "call_1"), ("to-claude", "toolu_1")])
def test_a_translated_tool_call_becomes_a_function_call_item(client: openai.OpenAI, model: str, call_id: str) -> None:
    whole = client.responses.create(model=model, input="weather?", tools=[WEATHER])  # type: ignore[list-item]
    with client.responses.stream(model=model, input="weather?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        kinds = [event.type for event in stream]
        streamed = stream.get_final_response()

    for response in (whole, streamed):
        [item] = response.output
        assert item.type == "function_call"
        assert (item.call_id, item.name, json.loads(item.arguments)) == (call_id, "weather", TOOL_ARGUMENTS)
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds


def test_fields_a_chat_upstream_cannot_take_are_refused_but_relayed_to_openai(
    hub: LiveHub, fakes: dict[str, Any]
) -> None:
    body = {"input": "hi", "tools": [{"type": "custom", "name": "grep"}]}
    with hub.client() as http:
        refused = http.post("/v1/responses", json={"model": "to-chat", **body})
        relayed = http.post("/v1/responses", json={"model": "to-openai", **body})

    assert_openai_error(refused, status=400, param="tools[0].type")
    assert relayed.status_code == 200 and fakes["responses"].seen[-1][2]["tools"] == body["tools"]


def test_an_upstream_that_drops_mid_stream_ends_with_error_and_response_failed(
    hub: LiveHub, fakes: dict[str, Any]
) -> None:
    fakes["chat"].reset("drop")
    with hub.client() as http, http.stream("POST", "/v1/responses", json={"model": "to-chat", "input": "hi",
                                                                          "stream": True}) as streamed:  # fmt: skip
        frames = [json.loads(line[6:]) for line in streamed.read().decode().splitlines() if line.startswith("data: ")]

    assert [frame["type"] for frame in frames[-2:]] == ["error", "response.failed"]
    assert frames[-1]["response"]["status"] == "failed"
    assert [frame["sequence_number"] for frame in frames] == list(range(len(frames)))


def test_cloud_responses_are_audited_with_their_backend_and_upstream_usage(hub: LiveHub, client: openai.OpenAI) -> None:
    client.responses.create(model="to-openai", input="count me", extra_headers={"x-request-id": "resp-cloud-audit"})
    script = ("from audit.models import AuditLog; import json; print(json.dumps(list(AuditLog.objects.filter("
              "request_id='resp-cloud-audit').values_list('endpoint', 'backend', 'status_code', 'prompt_tokens', "
              "'completion_tokens', 'cached_tokens'))))")  # fmt: skip
    rows: list[Any] = []
    deadline = time.monotonic() + 15
    while not rows and time.monotonic() < deadline:
        rows = json.loads(hub.manage("shell", "-c", script).stdout.strip().splitlines()[-1])
        time.sleep(0.3)

    assert rows == [["responses", "fake-openai-responses", 200, 13, 5, 2]]
