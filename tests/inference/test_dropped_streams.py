"""A stream the server's handler never iterates still ends its request: audit row, settled limits, a free slot.

The real ASGI application is driven in this process: the client's connection stalls when the response
starts and then goes away, so Django's handler cancels the response before its first frame (before the
ledger lived in the body it owned, that request left no audit row, kept its reservation and decoded to
max_tokens for nobody).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from audit.models import AuditLog
from audit.services import audit_writer
from catalog.models import Profile
from catalog.services import local_model_register, profile_upsert
from inference import runtime
from mlxhub.accounts.limits import limits_usage
from mlxhub.accounts.models import ApiKey, Role
from mlxhub.accounts.services import api_key_create
from tests.mlxhub.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)
ENDLESS_TOKENS = 1500


@pytest.fixture
def profile(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Profile]:
    local_model = local_model_register(path=Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-copy")))
    profile = profile_upsert(name="dropped", local_model=local_model)
    profile.context_length = 2 * ENDLESS_TOKENS
    profile.save()
    yield profile
    client = runtime._client
    if client is not None and client.started:  # type: ignore[attr-defined]
        async_to_sync(client.unload)(profile.local_model.path, force=True)


@pytest.fixture
def key(team: Any) -> tuple[ApiKey, str]:
    owner = make_user("dana", team=team, role=Role.MEMBER)
    created = api_key_create(owner=owner, name="dropped", team=team, limits={"max_concurrent": 5})
    return created.api_key, created.secret


def stalled_client(secret: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any, Any, asyncio.Event]:
    """An ASGI scope and a connection that takes the request, stalls at the response's start, then leaves."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"authorization", f"Bearer {secret}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    started = asyncio.Event()
    sent: list[dict[str, Any]] = []
    body_given = False

    async def receive() -> dict[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await started.wait()  # the response has begun: now the client goes away
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            started.set()
            await asyncio.Event().wait()  # a connection that never drains: cancelled when the client leaves

    return scope, receive, send, started


def test_a_stream_cancelled_before_its_first_frame_is_audited_settled_and_frees_its_slot(profile, key):
    from mlxhub.asgi import application

    api_key, secret = key
    body = {
        "model": "dropped",
        "messages": [{"role": "user", "content": "a story that never ends"}],
        "max_tokens": ENDLESS_TOKENS,
        "stream": True,
        "temperature": 0,
    }

    def audited() -> list[AuditLog]:
        audit_writer.flush(timeout=1)
        return list(AuditLog.objects.filter(key_prefix=api_key.prefix))

    async def drive() -> list[AuditLog]:
        scope, receive, send, started = stalled_client(secret, body)
        await asyncio.wait_for(application(scope, receive, send), timeout=60)
        assert started.is_set()  # the view had answered: the request was admitted before the client left
        # The server's loop runs on (as daphne's does): the request ends there, when the engine confirms.
        async with asyncio.timeout(20):
            while not (rows := await sync_to_async(audited)()):
                await asyncio.sleep(0.05)
        return rows

    [row] = async_to_sync(drive)()
    stats = async_to_sync(runtime.engine_client().stats)()
    assert stats.in_flight.get(profile.local_model.path, 0) == 0
    assert (row.status_code, row.error_type, row.cancelled) == (499, "client_disconnected", True)
    assert row.prompt_tokens > 0
    assert row.completion_tokens < ENDLESS_TOKENS  # cancelled, not decoded to the end for nobody
    usage = sync_to_async(limits_usage)
    assert async_to_sync(usage)(owner=api_key)["concurrent"] == 0  # the reservation was settled
