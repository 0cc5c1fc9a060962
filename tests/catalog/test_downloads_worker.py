"""Downloads end to end: the control API served by daphne, a real Celery worker, the fake hub with faults.

One MLX Hub (its own MLXHUB_HOME, SQLite file and broker folder) and one worker serve the whole module;
every test downloads a repository of its own, so their jobs never meet. The worker consumes a queue named
for this module, so on a shared Redis (CI) no other worker can take these jobs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub, FakeRepo, text_repo
from tests.conftest import REPO, LiveHub, hub_env, start_hub, stop_hub

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub


pytestmark = pytest.mark.services

LEASE_SECONDS = 3
TERMINAL = {"done", "failed", "cancelled"}


@dataclass
class Stack:
    hub: LiveHub
    queue: str
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0

    @property
    def models_dir(self) -> Path:
        return self.hub.home / "models"

    def worker_log(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.hub.home.glob("worker-*.log")))

    def start_worker(self) -> None:
        self.worker_starts += 1
        log = (self.hub.home / f"worker-{self.worker_starts}.log").open("wb")
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mlxhub",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--loglevel=INFO",
                f"--queues={self.queue}",
                f"--hostname={self.queue}-{self.worker_starts}@%h",
            ],
            cwd=REPO,
            env=self.hub.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop_worker(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.worker is None:
            return
        self.worker.send_signal(sig)
        try:
            self.worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.worker = None

    def client(self) -> httpx.Client:
        return self.hub.client()

    def start(self, repo_id: str, expect: int = 201) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/api/catalog/downloads/", json={"repo_id": repo_id})
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, download_id: int) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/api/catalog/downloads/{download_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, download_id: int, action: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.post(f"/api/catalog/downloads/{download_id}/{action}/")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, download_id: int, until: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(download_id)
            if until(job):
                return job
            assert time.monotonic() < deadline, f"gave up waiting; job: {job}\n{self.worker_log()[-6000:]}"
            assert self.worker is None or self.worker.poll() is None, self.worker_log()[-6000:]
            time.sleep(0.1)

    def local_model(self, local_model_id: int) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/api/catalog/local/{local_model_id}/")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_hub: FakeHub, tiny_model_dir: Path) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("catalog-hub")
    # The demo model bootstrap would build is already here, so bootstrap only registers it.
    shutil.copytree(tiny_model_dir, home / "models" / "mlxhub-demo-tiny")
    queue = f"test-downloads-{uuid.uuid4().hex[:10]}"
    extra = {
        "MLXHUB_ENGINE_PRELOAD": "0",
        "MLXHUB_HF_ENDPOINT": fake_hub.url,
        "HF_HOME": str(home / "hf-home"),
        "MLXHUB_DOWNLOAD_QUEUE": queue,
        "MLXHUB_DOWNLOAD_LEASE_SECONDS": str(LEASE_SECONDS),
        "MLXHUB_DOWNLOAD_MIN_FREE_BYTES": "0",
    }
    # CI runs the services tests again on Redis; hub_env() strips every MLXHUB_* variable.
    if os.environ.get("MLXHUB_REDIS_URL"):
        extra["MLXHUB_REDIS_URL"] = os.environ["MLXHUB_REDIS_URL"]
    # The worker boots while bootstrap migrates; its start-up look for interrupted jobs tolerates no tables yet.
    stack = Stack(hub=LiveHub("", "", "", home, hub_env(home, **extra), None, home / "none"), queue=queue)  # type: ignore[arg-type]
    stack.start_worker()
    try:
        stack.hub = start_hub(home, **extra)
        yield stack
    finally:
        stack.stop_worker()
        if stack.hub.process is not None:
            stop_hub(stack.hub)


@pytest.fixture
def repo(request: pytest.FixtureRequest, fake_hub: FakeHub, tiny_model_dir: Path) -> Iterator[FakeRepo]:
    """The tiny text model under a repository name of this test's own."""
    repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/worker-{request.node.name[5:60]}"))
    yield repo
    fake_hub.throttle(repo.repo_id, None)


def assert_identical(folder: Path, repo: FakeRepo) -> None:
    on_disk = {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}
    assert on_disk == repo.files


def partial_dir(stack: Stack, repo: FakeRepo) -> Path:
    return stack.models_dir / ".partial" / repo.repo_id.replace("/", "--")


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in TERMINAL


def test_a_worker_downloads_a_repository_and_registers_it_with_identical_files(stack: Stack, repo: FakeRepo):
    job = stack.start(repo.repo_id)
    assert job["status"] == "queued" and job["bytes_total"] == sum(map(len, repo.files.values()))

    job = stack.wait(job["id"], finished)

    assert (job["status"], job["bytes_done"], job["error"]) == ("done", job["bytes_total"], "")
    assert job["requested_by"] == "admin"
    local_model = stack.local_model(job["local_model"])
    assert (local_model["repo_id"], local_model["kind"], local_model["size_bytes"]) == (
        repo.repo_id,
        "text",
        job["bytes_total"],
    )
    assert_identical(Path(local_model["path"]), repo)
    assert not partial_dir(stack, repo).exists()


def test_a_dropped_connection_is_retried_and_resumed_with_a_range_request(
    stack: Stack, fake_hub: FakeHub, repo: FakeRepo
):
    fake_hub.drop_once(repo.repo_id, "model.safetensors")

    job = stack.wait(stack.start(repo.repo_id)["id"], finished)

    assert job["status"] == "done", job
    assert job["attempts"] == 2
    first, second = fake_hub.file_requests(repo.repo_id, "model.safetensors")
    assert first.aborted and 0 < first.bytes_sent < len(repo.files["model.safetensors"])
    # The reset discards what the kernel had not delivered yet: the worker resumes from what it received.
    assert second.range is not None and second.status == 206
    assert 0 < int(second.range.removeprefix("bytes=").rstrip("-")) <= first.bytes_sent
    assert_identical(Path(stack.local_model(job["local_model"])["path"]), repo)


def test_a_server_error_is_retried_with_backoff_and_the_download_completes(
    stack: Stack, fake_hub: FakeHub, repo: FakeRepo
):
    fake_hub.fail_once(repo.repo_id, "config.json", status=500)

    job = stack.wait(stack.start(repo.repo_id)["id"], finished)

    assert (job["status"], job["attempts"]) == ("done", 2), job
    assert [request.status for request in fake_hub.file_requests(repo.repo_id, "config.json")] == [500, 200]
    assert "HTTP 500" in stack.worker_log()
    assert_identical(Path(stack.local_model(job["local_model"])["path"]), repo)


def test_a_missing_file_fails_the_download_with_a_clear_error(stack: Stack, fake_hub: FakeHub, repo: FakeRepo):
    fake_hub.missing(repo.repo_id, "tokenizer.json")

    job = stack.wait(stack.start(repo.repo_id)["id"], finished)

    assert job["status"] == "failed"
    assert job["error"] == f"{repo.repo_id}/tokenizer.json was not found on the hub (HTTP 404)."
    assert job["attempts"] == 1 and job["local_model"] is None
    assert not (stack.models_dir / repo.repo_id.replace("/", "--")).exists()


def test_cancelling_a_slow_download_stops_it_within_a_second_and_removes_the_partial_files(
    stack: Stack, fake_hub: FakeHub, repo: FakeRepo
):
    fake_hub.throttle(repo.repo_id, 50_000)
    job = stack.start(repo.repo_id)
    stack.wait(job["id"], lambda job: job["bytes_done"] > 30_000)
    assert partial_dir(stack, repo).is_dir()

    asked = time.monotonic()
    assert stack.act(job["id"], "cancel")["status"] == "cancelled"
    while partial_dir(stack, repo).exists() and time.monotonic() - asked < 10:
        time.sleep(0.02)
    stopped_after = time.monotonic() - asked

    assert not partial_dir(stack, repo).exists()
    assert stopped_after < 1.0, stopped_after
    request = fake_hub.file_requests(repo.repo_id, "model.safetensors")[-1]
    time.sleep(0.5)  # the server notices the closed connection at its next write
    assert request.aborted and request.bytes_sent < len(repo.files["model.safetensors"])
    assert stack.get(job["id"])["status"] == "cancelled"


def test_a_paused_download_resumes_from_its_partial_files(stack: Stack, fake_hub: FakeHub, repo: FakeRepo):
    fake_hub.throttle(repo.repo_id, 50_000)
    job = stack.start(repo.repo_id)
    assert stack.start(repo.repo_id, expect=200)["id"] == job["id"]  # asking again joins the job
    running = stack.wait(job["id"], lambda job: job["bytes_done"] > 60_000)
    assert running["status"] == "running"
    assert 10_000 < running["speed"] < 200_000 and running["eta"] is not None  # the link gives 50 kB/s

    assert stack.act(job["id"], "pause")["status"] == "paused"
    part = partial_dir(stack, repo) / "model.safetensors.part"
    time.sleep(1.0)
    kept = part.stat().st_size
    assert kept > 0
    fake_hub.throttle(repo.repo_id, None)
    assert stack.act(job["id"], "resume")["status"] == "queued"

    job = stack.wait(job["id"], finished)

    assert job["status"] == "done", job
    assert fake_hub.file_requests(repo.repo_id, "model.safetensors")[-1].range == f"bytes={kept}-"
    assert_identical(Path(stack.local_model(job["local_model"])["path"]), repo)


def test_a_download_interrupted_by_killing_the_worker_is_finished_by_a_new_worker(
    stack: Stack, fake_hub: FakeHub, repo: FakeRepo
):
    fake_hub.throttle(repo.repo_id, 50_000)
    job = stack.start(repo.repo_id)
    stack.wait(job["id"], lambda job: job["bytes_done"] > 60_000)

    stack.stop_worker(signal.SIGKILL)
    part = partial_dir(stack, repo) / "model.safetensors.part"
    kept = part.stat().st_size
    assert kept > 0 and stack.get(job["id"])["status"] == "running"
    fake_hub.throttle(repo.repo_id, None)
    stack.start_worker()

    job = stack.wait(job["id"], finished, timeout=90)

    assert job["status"] == "done", job
    assert job["attempts"] == 2
    assert fake_hub.file_requests(repo.repo_id, "model.safetensors")[-1].range == f"bytes={kept}-"
    assert_identical(Path(stack.local_model(job["local_model"])["path"]), repo)
    assert "queued interrupted downloads again" in stack.worker_log()


def test_a_start_waits_while_another_process_holds_the_disk_reservation_lock(stack: Stack, repo: FakeRepo):
    """The free-disk check and the insert of the job that it admits run under one lock across processes."""
    lock_path = stack.models_dir / ".partial" / ".disk.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    answer: dict[str, Any] = {}
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as another process's check would, between its check and its commit
        starter = threading.Thread(target=lambda: answer.update(job=stack.start(repo.repo_id)))
        starter.start()
        starter.join(1.5)
        waited = starter.is_alive()
        fcntl.flock(handle, fcntl.LOCK_UN)
    starter.join(30)

    assert waited and answer["job"]["status"] == "queued"
    assert stack.wait(answer["job"]["id"], finished)["status"] == "done"
