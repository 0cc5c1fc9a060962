"""For the live tests of real clients (frameworks, coding agents): a server of the module's own that serves
the tool-template model and the terse one, request ids that tie a client's requests to their audit rows, and
the check that those rows say the request went all the way through."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import LiveHub, start_hub, stop_hub

# The Hermes-template copy of the tiny model: random weights, turns ended by a grammar (forced calls, JSON).
TOOLS_MODEL = "tools"
# The terse model (tests.model_builders.build_terse_model): free-text turns that end by themselves.
TERSE_MODEL = "terse"
# A turn that ran this long would end incomplete; the terse model gets there with probability 0.75 ** 256.
TERSE_MAX_TOKENS = 256
AUDIT_WAIT_SECONDS = 15


@contextmanager
def client_hub(home: Path, *, terse_model: Path, tool_model: Path | None = None) -> Iterator[LiveHub]:
    """A live server with the terse model registered, and the tool-template one when given."""
    hub = start_hub(home)
    try:
        if tool_model is not None:
            hub.manage("register_model", str(tool_model), "--name", TOOLS_MODEL)
        hub.manage("register_model", str(terse_model), "--name", TERSE_MODEL, "--max-tokens", str(TERSE_MAX_TOKENS))
        yield hub
    finally:
        stop_hub(hub)


def request_id(label: str) -> str:
    """An ``x-request-id`` for one test's requests: the audit rows carry it."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


def audit_rows(hub: LiveHub, rid: str, *, count: int) -> list[dict[str, Any]]:
    """The audit rows of the requests sent with ``rid``, through the control API, once ``count`` are written
    (the writer flushes in the background); oldest first."""
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    with hub.client() as client:
        while True:
            response = client.get("/api/audit/", params={"limit": 1000})
            assert response.status_code == 200, response.text
            rows = [row for row in response.json()["results"] if row["request_id"] == rid]
            if len(rows) >= count or time.monotonic() > deadline:
                return sorted(rows, key=lambda row: row["created_at"])
            time.sleep(0.2)


def assert_served(hub: LiveHub, rid: str, *, endpoint: str, models: Sequence[str]) -> list[dict[str, Any]]:
    """Each request sent with ``rid`` left one audit row, in order one per name in ``models``: answered 200
    by the local engine on that model, with the tokens it read and wrote. Returns the rows."""
    rows = audit_rows(hub, rid, count=len(models))
    assert [row["model_served"] for row in rows] == list(models), rows
    for row in rows:
        assert row["status_code"] == 200 and row["error_type"] == "", row
        assert row["endpoint"] == endpoint and row["backend"] == "local", row
        assert row["model_requested"] == row["model_served"], row
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0, row
        assert not row["cancelled"], row
    return rows
