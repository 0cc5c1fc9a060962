"""Helpers for reading what the live server sends: SSE streams and its log."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conftest import LiveHub


def sse_payloads(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order; fails on anything that is not an SSE event or comment."""
    payloads = []
    for event in body.split("\n\n"):
        if not event.strip():
            continue
        lines = event.split("\n")
        assert all(line.startswith(("data: ", ":")) for line in lines), f"not an SSE event: {event!r}"
        payloads.extend(line[len("data: ") :] for line in lines if line.startswith("data: "))
    return payloads


def sse_chunks(body: str) -> list[dict[str, Any]]:
    """The JSON chunks of an OpenAI stream; the stream must end with exactly one `data: [DONE]`."""
    payloads = sse_payloads(body)
    assert payloads, "the stream carried no events"
    assert payloads[-1] == "[DONE]", f"the stream ended with {payloads[-1]!r}"
    assert payloads.count("[DONE]") == 1
    return [json.loads(payload) for payload in payloads[:-1]]


def log_records(log: str) -> list[dict[str, Any]]:
    """The server's JSON log lines (other output, like daphne's access log, is skipped)."""
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def logged(hub: LiveHub, *, request_id: str, contains: str = "", timeout: float = 5.0) -> list[str]:
    """Messages logged for `request_id` (waiting until one contains `contains`)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = [r["message"] for r in log_records(hub.log()) if r.get("request_id") == request_id]
        if any(contains in message for message in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)
