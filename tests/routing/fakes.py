"""Small fake upstreams speaking OpenAI's and Anthropic's wire formats, with fault injection.

A threaded stdlib HTTP server per fake. ``faults`` is a list consumed one per request:
"500", "429", "401", "403" (answer that status), "drop" (stream one event, then cut the connection),
"hang" (sleep past any read timeout). With the list empty the fake answers normally.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT_PIECES = ["Hello", " from", " the", " fake"]
TOOL_ARGUMENTS = {"city": "Paris"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


LONG_PIECE = "long " * 40_000  # 200,000 characters in one server-sent event


@dataclass
class FakeUpstream:
    kind: str  # "openai" or "anthropic"
    faults: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        root = f"http://{host!s}:{port}"
        return f"{root}/v1" if self.kind == "openai" else root

    def reset(self, *faults: str) -> None:
        self.faults[:] = list(faults)
        self.seen.clear()

    def start(self) -> FakeUpstream:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer and no Nagle: otherwise delayed ACKs add 40 ms to every
            # request and the latency comparison measures the fake, not MLX Hub.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                fault = fake.faults.pop(0) if fake.faults else ""
                if fault in ("500", "429", "401", "403"):
                    status = int(fault)
                    # Like OpenAI's 401, the message names the tail of the key it was sent.
                    sent = self.headers.get("authorization") or self.headers.get("x-api-key") or ""
                    message = f"fake {status}: incorrect key ...{sent[-4:]}" if status < 500 else f"fake {status}"
                    if fake.kind == "openai":
                        error = {"error": {"message": message, "type": "server_error", "code": None}}
                    else:
                        error = {"type": "error", "error": {"type": "api_error", "message": message}}
                    self._json(status, error)
                    return
                if fault == "hang":
                    time.sleep(30)
                    return
                if self.path.endswith("/count_tokens"):
                    self._json(200, {"input_tokens": 42})
                    return
                wants_tool = bool(body.get("tools"))
                if fake.kind == "openai" and self.path.endswith("/embeddings"):
                    self._embeddings(body)
                    return
                if fake.kind == "openai" and self.path.endswith("/v1/completions"):
                    self._text_completion(body)
                    return
                if fake.kind == "openai":
                    self._openai(body, wants_tool, drop=fault == "drop", long=fault == "long")
                else:
                    self._anthropic(body, wants_tool, drop=fault == "drop")

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()

            def _send(self, data: str) -> None:
                self.wfile.write(data.encode())
                self.wfile.flush()

            def _openai(self, body: dict[str, Any], wants_tool: bool, *, drop: bool, long: bool = False) -> None:
                usage = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
                if not body.get("stream"):
                    message: dict[str, Any] = {"role": "assistant", "content": "".join(TEXT_PIECES)}
                    finish = "stop"
                    if wants_tool:
                        call = {"name": "weather", "arguments": json.dumps(TOOL_ARGUMENTS)}
                        message = {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
                        }
                        finish = "tool_calls"
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body["model"],
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                            "usage": usage,
                        },
                    )
                    return
                self._start_stream()

                def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
                    payload = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    return f"data: {json.dumps(payload)}\n\n"

                self._send(chunk({"role": "assistant", "content": ""}))
                if long:  # one event longer than any read buffer, its line cut in two writes, CRLF line ends
                    event = chunk({"content": LONG_PIECE}).replace("\n\n", "\r\n\r\n")
                    self._send(event[: len(event) // 2])
                    self._send(event[len(event) // 2 :])
                if drop:
                    self._send(chunk({"content": TEXT_PIECES[0]}))
                    self.close_connection = True
                    self.wfile.write(b'data: {"trunc')  # a torn event, then the socket closes
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                if wants_tool:
                    call = {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                    self._send(chunk({"tool_calls": [call]}))
                    arguments = json.dumps(TOOL_ARGUMENTS)
                    for part in (arguments[:5], arguments[5:]):
                        self._send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
                    self._send(chunk({}, "tool_calls"))
                else:
                    for piece in TEXT_PIECES:
                        self._send(chunk({"content": piece}))
                    self._send(chunk({}, "stop"))
                if (body.get("stream_options") or {}).get("include_usage"):
                    payload = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": body["model"],
                        "choices": [],
                        "usage": usage,
                    }
                    self._send(f"data: {json.dumps(payload)}\n\n")
                self._send("data: [DONE]\n\n")

            def _embeddings(self, body: dict[str, Any]) -> None:
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": index, "embedding": [float(index), 0.5, -0.5]}
                    for index in range(len(inputs))
                ]
                usage = {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}
                self._json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

            def _text_completion(self, body: dict[str, Any]) -> None:
                def payload(text: str, finish: str | None, **extra: Any) -> dict[str, Any]:
                    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
                    return {"id": "cmpl-fake", "object": "text_completion", "created": 1, "model": body["model"],
                            "choices": [choice], **extra}  # fmt: skip

                usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
                if not body.get("stream"):
                    self._json(200, payload("".join(TEXT_PIECES), "stop", usage=usage))
                    return
                self._start_stream()
                for piece in TEXT_PIECES:
                    self._send(f"data: {json.dumps(payload(piece, None))}\n\n")
                self._send(f"data: {json.dumps(payload('', 'stop'))}\n\n")
                if (body.get("stream_options") or {}).get("include_usage"):
                    final = {**payload("", None), "choices": [], "usage": usage}
                    self._send(f"data: {json.dumps(final)}\n\n")
                self._send("data: [DONE]\n\n")

            def _anthropic(self, body: dict[str, Any], wants_tool: bool, *, drop: bool) -> None:
                if not body.get("stream"):
                    content: list[dict[str, Any]] = [{"type": "text", "text": "".join(TEXT_PIECES)}]
                    stop = "end_turn"
                    if wants_tool:
                        content = [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": TOOL_ARGUMENTS}]
                        stop = "tool_use"
                    self._json(
                        200,
                        {
                            "id": "msg_fake",
                            "type": "message",
                            "role": "assistant",
                            "model": body["model"],
                            "content": content,
                            "stop_reason": stop,
                            "stop_sequence": None,
                            "usage": {"input_tokens": 11, "output_tokens": 4},
                        },
                    )
                    return
                self._start_stream()

                def event(name: str, payload: dict[str, Any]) -> None:
                    self._send(f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n")

                message = {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                }
                event("message_start", {"message": message})
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                event("ping", {})
                if wants_tool:
                    block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
                    event("content_block_start", {"index": 0, "content_block": block})
                    arguments = json.dumps(TOOL_ARGUMENTS)
                    for part in (arguments[:5], arguments[5:]):
                        event(
                            "content_block_delta",
                            {"index": 0, "delta": {"type": "input_json_delta", "partial_json": part}},
                        )
                    stop = "tool_use"
                else:
                    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                    for piece in TEXT_PIECES:
                        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                    stop = "end_turn"
                event("content_block_stop", {"index": 0})
                event(
                    "message_delta",
                    {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 4}},
                )
                event("message_stop", {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
