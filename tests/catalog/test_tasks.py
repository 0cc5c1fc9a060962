"""Catalog jobs: called directly, and run by a real Celery worker in another process."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from catalog.models import LocalModel
from catalog.services import local_model_register
from catalog.tasks import local_model_refresh
from tests.catalog.conftest import folder_size
from tests.conftest import REPO, hub_env

EXTRA_BYTES = 12345


def test_refreshing_a_model_records_its_new_size(db, model_copy: Path):
    local_model = local_model_register(path=model_copy)
    before = local_model.size_bytes
    (model_copy / "extra.bin").write_bytes(b"\0" * EXTRA_BYTES)

    result = local_model_refresh(local_model.pk)

    local_model.refresh_from_db()
    assert local_model.size_bytes == before + EXTRA_BYTES == folder_size(model_copy)
    assert result == str(local_model.size_bytes)


def test_refreshing_keeps_the_repo_id_and_the_row(db, model_copy: Path):
    local_model = local_model_register(path=model_copy, repo_id="acme/tiny")

    local_model_refresh(local_model.pk)

    assert list(LocalModel.objects.values_list("pk", "repo_id")) == [(local_model.pk, "acme/tiny")]


def test_refreshing_a_deleted_row_returns_quietly(db, model_copy: Path):
    local_model = local_model_register(path=model_copy)
    local_model.delete()

    assert local_model_refresh(local_model.pk) is None
    assert not LocalModel.objects.exists()


def test_refreshing_a_folder_that_is_no_longer_a_model_warns_and_keeps_the_row(db, model_copy: Path, caplog):
    local_model = local_model_register(path=model_copy)
    (model_copy / "config.json").unlink()

    with caplog.at_level(logging.WARNING, logger="catalog.tasks"):
        assert local_model_refresh(local_model.pk) is None

    assert LocalModel.objects.get(pk=local_model.pk).size_bytes == local_model.size_bytes
    assert "no longer valid" in caplog.text


def test_the_task_takes_json_arguments_only(db):
    from mlxhub.celery import app

    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert local_model_refresh.name == "catalog.tasks.local_model_refresh"


# Run by `manage.py shell -c` in the hub's environment: enqueue on QUEUE, then wait for the worker's write.
ENQUEUE_AND_WAIT = """
import time
from catalog.models import LocalModel
from catalog.tasks import local_model_refresh

local_model = LocalModel.objects.get(path={path!r})
before = local_model.size_bytes
local_model_refresh.apply_async(args=[local_model.pk], queue={queue!r})
deadline = time.monotonic() + 60
while local_model.size_bytes == before and time.monotonic() < deadline:
    time.sleep(0.2)
    local_model.refresh_from_db()
print("sizes", before, local_model.size_bytes)
"""


@pytest.mark.services
def test_a_real_worker_refreshes_a_model_enqueued_by_another_process(tmp_path: Path, model_copy: Path):
    home = tmp_path / "hub"
    home.mkdir()
    env = hub_env(home, MLXHUB_ENGINE_PRELOAD="0")
    # CI runs the services tests again on Redis; hub_env() strips every MLXHUB_* variable.
    if os.environ.get("MLXHUB_REDIS_URL"):
        env["MLXHUB_REDIS_URL"] = os.environ["MLXHUB_REDIS_URL"]
    # A queue of its own, so no other worker on a shared Redis can take this test's message.
    queue = f"test-{uuid.uuid4().hex[:12]}"
    worker_log = home / "worker.log"

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\nworker log:\n{worker_log.read_text()}"
        return result

    # The demo model bootstrap would build is already here, so bootstrap only registers it.
    shutil.copytree(model_copy, home / "models" / "mlxhub-demo-tiny")
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "mlxhub", "worker", "--concurrency=1", "--pool=solo",
                "--loglevel=INFO", f"--queues={queue}", f"--hostname={queue}@%h",
            ],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        manage("bootstrap")
        manage("register_model", str(model_copy), "--name", "tiny-copy")
        before = folder_size(model_copy)
        (model_copy / "extra.bin").write_bytes(b"\0" * EXTRA_BYTES)

        result = manage("shell", "-c", ENQUEUE_AND_WAIT.format(path=str(model_copy.resolve()), queue=queue))

        sizes = [line for line in result.stdout.splitlines() if line.startswith("sizes ")]
        assert sizes == [f"sizes {before} {before + EXTRA_BYTES}"], result.stdout + worker_log.read_text()
        assert "catalog.tasks.local_model_refresh" in worker_log.read_text()
        assert worker.poll() is None, worker_log.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
