"""The web process stopping, as `manage.py serve` runs it: a graceful drain on SIGTERM, and an engine that dies.

Both print their timings (run with -s to read them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LIVE_API_KEY, REPO, free_port, hub_env, wait_ready
from tests.mlxhub.test_serve import command_line, descendants, still_running

pytestmark = pytest.mark.live

STREAMS = 4
STREAM_SECONDS = 10.0
EXIT_SECONDS = 60


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    home: Path
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def web(self) -> dict[int, int]:
        """The web process under the launcher, as pid -> start time."""
        for pid, started in descendants(self.process.pid).items():
            if "mlxhub.web" in command_line(pid):
                return {pid: started}
        raise AssertionError(f"no web process under the launcher:\n{self.log()}")

    def shell(self, code: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return result.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def serve(home: Path, tiny_model_dir: Path, *args: str, **env: str) -> Iterator[Served]:
    # The demo model bootstrap would build is already in place, so the launcher only registers it.
    shutil.copytree(tiny_model_dir, home / "models" / "mlxhub-demo-tiny")
    port = free_port()
    log_path = home / "serve.log"
    environment = hub_env(home, **env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), *args],
            cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = Served(process, f"http://127.0.0.1:{port}", home, environment, log_path)
    children: dict[int, int] = {}
    try:
        wait_ready(served.base_url, process, log_path)
        children = descendants(process.pid)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in still_running(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def eos_id(served: Served) -> int:
    path = served.shell("from catalog.models import Profile; print(Profile.objects.get(name='demo').local_model.path)")
    return int(json.loads((Path(path) / "config.json").read_text())["eos_token_id"])


def client_for(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{served.base_url}/v1", api_key=LIVE_API_KEY, max_retries=0, timeout=120)


async def tokens_per_second(client: openai.AsyncOpenAI, eos: int) -> float:
    """One stream's pace when four decode together, measured on a short run."""

    async def one() -> None:
        await client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": f"pace {uuid.uuid4().hex}"}], max_tokens=100,
            logit_bias={str(eos): -100},
        )  # fmt: skip

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(STREAMS)))
    return 100 / (time.monotonic() - started)


async def open_stream(client: openai.AsyncOpenAI, rid: str, eos: int, max_tokens: int) -> Any:
    return await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": f"tell a long story {rid}"}], max_tokens=max_tokens,
        logit_bias={str(eos): -100}, stream=True, extra_headers={"x-request-id": rid},
    )  # fmt: skip


async def first_delta(stream: Any) -> Any:
    iterator = stream.__aiter__()
    while True:
        chunk = await iterator.__anext__()
        if chunk.choices and chunk.choices[0].delta.content:
            return iterator


async def finish_reason(iterator: Any) -> str | None:
    reason = None
    async for chunk in iterator:
        if chunk.choices and chunk.choices[0].finish_reason:
            reason = chunk.choices[0].finish_reason
    return reason


async def readyz_unavailable(base_url: str, since: float) -> float:
    """Seconds from ``since`` until /readyz said 503, polled on a thread of its own: the test's event loop
    may be busy parsing the chunks its streams have buffered, which would add to the figure."""

    def poll() -> float:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=base_url, timeout=5) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):  # gone already is not enough: it must say 503 first
                    if http.get("/readyz").status_code == 503:
                        return time.monotonic() - since
                time.sleep(0.02)
        raise AssertionError("/readyz never answered 503")

    return await asyncio.to_thread(poll)


async def wait_exit(process: dict[int, int], since: float) -> float:
    while still_running(process):
        await asyncio.sleep(0.02)
    return time.monotonic() - since


def test_sigterm_drains_streams_in_flight_refuses_new_requests_and_exits_zero(tmp_path: Path, tiny_model_dir: Path):
    with serve(tmp_path / "hub", tiny_model_dir, MLXHUB_DRAIN_SECONDS="30") as served:
        eos = eos_id(served)
        timings = asyncio.run(drain_scenario(served, eos))
        code = served.process.wait(timeout=EXIT_SECONDS)
        assert code == 0, served.log()  # every child stopped in time: none had to be killed
        assert "worker: Warm shutdown" in served.log()  # Celery's, on its SIGTERM
        rows = json.loads(
            served.shell(
                "import json; from audit.models import AuditLog; print(json.dumps(list(AuditLog.objects.filter("
                f"request_id__startswith='drain-{timings['tag']}').values('request_id', 'status_code', "
                "'completion_tokens', 'cancelled'))))"
            )
        )
    print(f"\ndrain timings: {json.dumps({k: v for k, v in timings.items() if k != 'tag'})}")
    assert len(rows) == STREAMS, rows
    for row in rows:
        assert row["status_code"] == 200 and not row["cancelled"], row
        assert row["completion_tokens"] == timings["max_tokens"], row


async def drain_scenario(served: Served, eos: int) -> dict[str, Any]:
    client = client_for(served)
    pace = await tokens_per_second(client, eos)
    # The pace falls as the streams grow: aim a little under, for streams of about STREAM_SECONDS.
    max_tokens = min(1900, int(0.7 * pace * STREAM_SECONDS))
    tag = uuid.uuid4().hex[:8]
    streams = [await open_stream(client, f"drain-{tag}-{index}", eos, max_tokens) for index in range(STREAMS)]
    iterators = await asyncio.gather(*(first_delta(stream) for stream in streams))
    web = served.web()

    served.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    unready = await readyz_unavailable(served.base_url, signalled)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], max_tokens=1)
    refused_after = time.monotonic() - signalled
    reasons = await asyncio.gather(*(finish_reason(iterator) for iterator in iterators))
    streams_done = time.monotonic() - signalled
    web_exit = await wait_exit(web, signalled)

    assert reasons == ["length"] * STREAMS, reasons
    assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"] == "5"
    assert refused.value.response.json()["error"]["code"] == "shutting_down"
    return {
        "tag": tag,
        "max_tokens": max_tokens,
        "tokens_per_second_per_stream": round(pace, 1),
        "sigterm_to_readyz_503": round(unready, 3),
        "sigterm_to_refused_request": round(refused_after, 3),
        "sigterm_to_streams_done": round(streams_done, 3),
        "sigterm_to_web_exit": round(web_exit, 3),
    }


def test_a_dead_engine_fails_streams_in_flight_and_the_web_process_exits_70_and_is_restarted(
    tmp_path: Path, tiny_model_dir: Path
):
    fault = tmp_path / "fault"
    hooks = {"MLXHUB_TEST_HOOKS": "1", "MLXHUB_TEST_ENGINE_FAULT": str(fault)}
    with serve(tmp_path / "hub", tiny_model_dir, "--no-worker", **hooks) as served:
        eos = eos_id(served)
        timings = asyncio.run(death_scenario(served, eos, fault))
        fault.unlink()  # the restarted process would die again
        restarted = time.monotonic()
        wait_ready(served.base_url, served.process, served.log_path)
        timings["exit_to_ready_again"] = round(time.monotonic() - restarted, 3)
        answer = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key=LIVE_API_KEY, max_retries=0).completions
        again = answer.create(model="demo", prompt="again", max_tokens=2, temperature=0)  # greedy: never EOS
        assert again.choices[0].finish_reason == "length"
        assert "web exited with 70 (its engine died); starting it again" in served.log()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=EXIT_SECONDS) == 0, served.log()
        rows = json.loads(
            served.shell(
                "import json; from audit.models import AuditLog; print(json.dumps(list(AuditLog.objects.filter("
                f"request_id__startswith='death-{timings.pop('tag')}').values('status_code', 'error_type'))))"
            )
        )
    print(f"\nwatchdog timings: {json.dumps(timings)}")
    assert len(rows) == 2 and all(row["status_code"] == 503 for row in rows), rows


async def death_scenario(served: Served, eos: int, fault: Path) -> dict[str, Any]:
    client = client_for(served)
    tag = uuid.uuid4().hex[:8]
    streams = [await open_stream(client, f"death-{tag}-{index}", eos, 1900) for index in range(2)]
    iterators = await asyncio.gather(*(first_delta(stream) for stream in streams))
    web = served.web()

    fault.touch()
    injected = time.monotonic()
    unready_task = asyncio.create_task(readyz_unavailable(served.base_url, injected))

    async def fails(iterator: Any) -> float:
        with pytest.raises(openai.APIError) as failed:
            await finish_reason(iterator)
        assert "engine" in str(failed.value).lower(), failed.value
        return time.monotonic() - injected

    failed_after = await asyncio.gather(*(fails(iterator) for iterator in iterators))
    try:
        async with httpx.AsyncClient(base_url=served.base_url, timeout=5) as http:
            refused = await http.post(
                "/v1/completions", json={"model": "demo", "prompt": "x", "max_tokens": 1},
                headers={"Authorization": f"Bearer {LIVE_API_KEY}"},
            )  # fmt: skip
        refusal: Any = (refused.status_code, refused.json()["error"]["code"], refused.headers.get("retry-after"))
    except httpx.HTTPError:
        refusal = "gone"  # it exited already (it writes its bookkeeping first: rarely this fast)
    unready = await unready_task
    exited = await wait_exit(web, injected)

    assert max(failed_after) < 2.0, failed_after
    assert refusal in ((503, "engine_unavailable", "5"), "gone"), refusal
    return {
        "tag": tag,
        "fault_to_stream_errors": [round(value, 3) for value in failed_after],
        "fault_to_readyz_503": round(unready, 3),
        "new_request": str(refusal),
        "fault_to_web_exit": round(exited, 3),
    }
