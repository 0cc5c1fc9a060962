"""Downloads, one attempt at a time in this process: the job row, resume, faults, verification, the kinds.

The same paths run in a real Celery worker in test_downloads_worker.py; here each attempt is called
directly so every fault can be looked at step by step. A pause or cancel landing mid-stream needs a
second connection writing the same database while the first streams; the in-memory SQLite test database
refuses that (shared-cache table locks are not retried), so that case is tested with the real worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.constants import PART_SUFFIX
from catalog.hub import HubUnavailable
from catalog.models import Download, LocalModel, ModelKind
from catalog.services import (
    DownloadRefused,
    DownloadStateError,
    download_cancel,
    download_execute,
    download_model_dir,
    download_partial_dir,
    download_pause,
    download_requeue,
    download_resume,
    download_start,
)
from catalog.tasks import download_run
from tests.catalog import fakehub
from tests.catalog.fakehub import (
    ORG,
    FakeHub,
    FakeRepo,
    config_repo,
    embedding_config,
    text_repo,
    vision_config,
)

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings


pytestmark = pytest.mark.usefixtures("hub_settings")


@pytest.fixture
def text_model(request, fake_hub: FakeHub, tiny_model_dir: Path) -> FakeRepo:
    """The tiny text model under a repository name of this test's own."""
    return fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/{request.node.name[:60].replace('[', '-').strip(']')}"))


def attempt(download: Download, task_id: str = "task-1") -> str:
    """One run of the task's body; a transient error queues the job again, as the task does before retrying."""
    try:
        return download_execute(download_id=download.pk, task_id=task_id, worker="test@here")
    except HubUnavailable as exc:
        download_requeue(download_id=download.pk, task_id=task_id, error=exc.message)
        raise


def assert_identical(folder: Path, repo: FakeRepo) -> None:
    on_disk = {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}
    assert on_disk == repo.files


def test_a_download_fetches_every_file_and_registers_the_model(db, text_model: FakeRepo):
    started = download_start(repo_id=text_model.repo_id)
    assert started.created
    assert started.download.status == Download.Status.QUEUED
    assert started.download.bytes_total == sum(len(data) for data in text_model.files.values())

    assert attempt(started.download) == "done"

    download = Download.objects.get(pk=started.download.pk)
    assert (download.status, download.bytes_done, download.error) == ("done", download.bytes_total, "")
    assert download.commit_sha == text_model.sha
    assert download.finished_at is not None and download.started_at is not None
    local_model = download.local_model
    assert local_model is not None
    assert (local_model.repo_id, local_model.kind, local_model.architecture) == (
        text_model.repo_id,
        ModelKind.TEXT,
        "LlamaForCausalLM",
    )
    assert Path(local_model.path) == download_model_dir(download).resolve()
    assert_identical(Path(local_model.path), text_model)
    assert not download_partial_dir(download).exists()


def test_the_task_function_runs_the_same_attempt(db, text_model: FakeRepo):
    download = download_start(repo_id=text_model.repo_id).download

    assert download_run(download.pk) == "done"
    assert LocalModel.objects.filter(repo_id=text_model.repo_id).exists()


def test_a_task_for_a_deleted_job_returns_quietly(db):
    assert download_run(999_999) == "skipped"


@pytest.mark.parametrize(
    ("name", "config", "kind"),
    [("mini-embedder", embedding_config(), ModelKind.EMBEDDING), ("mini-vision", vision_config(), ModelKind.VISION)],
)
def test_the_kind_is_detected_when_the_model_is_registered(db, fake_hub: FakeHub, name, config, kind):
    repo = fake_hub.add(config_repo(f"{ORG}/{name}", config))
    download = download_start(repo_id=repo.repo_id).download

    assert attempt(download) == "done"

    assert LocalModel.objects.get(repo_id=repo.repo_id).kind == kind


def test_asking_twice_joins_the_active_job(db, text_model: FakeRepo):
    first = download_start(repo_id=text_model.repo_id)
    second = download_start(repo_id=text_model.repo_id, revision="main")

    assert (first.created, second.created) == (True, False)
    assert second.download.pk == first.download.pk
    assert Download.objects.count() == 1


def test_a_finished_download_does_not_block_a_new_one(db, text_model: FakeRepo):
    first = download_start(repo_id=text_model.repo_id).download
    attempt(first)

    again = download_start(repo_id=text_model.repo_id)

    assert again.created and again.download.pk != first.pk


def test_a_dropped_connection_keeps_the_partial_file_and_the_next_attempt_resumes_it(
    db, fake_hub: FakeHub, text_model: FakeRepo
):
    weights = len(text_model.files["model.safetensors"])
    fake_hub.drop_once(text_model.repo_id, "model.safetensors")
    download = download_start(repo_id=text_model.repo_id).download

    with pytest.raises(HubUnavailable):
        attempt(download)

    part = download_partial_dir(download) / f"model.safetensors{PART_SUFFIX}"
    kept = part.stat().st_size
    assert 0 < kept < weights
    assert attempt(download, task_id="task-2") == "done"
    (first, second) = fake_hub.file_requests(text_model.repo_id, "model.safetensors")
    assert first.aborted and first.range is None
    assert (second.range, second.status) == (f"bytes={kept}-", 206)
    assert_identical(download_model_dir(download), text_model)


def test_a_server_error_is_transient_and_the_next_attempt_succeeds(db, fake_hub: FakeHub, text_model: FakeRepo):
    fake_hub.fail_once(text_model.repo_id, "tokenizer.json", status=500)
    download = download_start(repo_id=text_model.repo_id).download

    with pytest.raises(HubUnavailable, match="HTTP 500"):
        attempt(download)

    assert attempt(download, task_id="task-2") == "done"
    assert_identical(download_model_dir(download), text_model)


def test_a_missing_file_fails_the_job_with_a_clear_error(db, fake_hub: FakeHub, text_model: FakeRepo):
    fake_hub.missing(text_model.repo_id, "tokenizer.json")
    download = download_start(repo_id=text_model.repo_id).download

    assert attempt(download) == "failed"

    download.refresh_from_db()
    assert download.status == Download.Status.FAILED
    assert download.error == f"{text_model.repo_id}/tokenizer.json was not found on the hub (HTTP 404)."
    assert not download_model_dir(download).exists()
    assert not LocalModel.objects.filter(repo_id=text_model.repo_id).exists()


def test_a_failed_job_can_be_retried_and_resumes(db, fake_hub: FakeHub, text_model: FakeRepo):
    fake_hub.missing(text_model.repo_id, "tokenizer.json")
    download = download_start(repo_id=text_model.repo_id).download
    attempt(download)
    fake_hub._missing.clear()

    download_resume(download=download)
    assert download.status == Download.Status.QUEUED and download.error == ""

    assert attempt(download, task_id="task-2") == "done"
    assert_identical(download_model_dir(download), text_model)


def test_a_gated_repository_needs_the_stored_token(db, fake_hub: FakeHub, tiny_model_dir: Path):
    from catalog.services import hub_token_set

    repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/gated-llama", gated=True))
    fake_hub.token = "hf_gated_secret_token"
    download = download_start(repo_id=repo.repo_id).download

    assert attempt(download) == "failed"
    download.refresh_from_db()
    assert "gated" in download.error

    hub_token_set(token="hf_gated_secret_token")
    download_resume(download=download)
    assert attempt(download, task_id="task-2") == "done"
    resolves = fake_hub.file_requests(repo.repo_id, "config.json")
    assert resolves[-1].authorization == "Bearer hf_gated_secret_token"


def test_a_repository_without_mlx_weights_is_refused(db, fake_hub: FakeHub):
    repo = fake_hub.add(FakeRepo(f"{ORG}/only-a-readme", {"README.md": b"# nothing\n", "config.json": b"{}"}))

    with pytest.raises(DownloadRefused, match="not an MLX model"):
        download_start(repo_id=repo.repo_id)
    assert not Download.objects.exists()


def test_an_unknown_repository_is_refused_before_a_job_exists(db):
    from catalog.hub import HubNotFound

    with pytest.raises(HubNotFound):
        download_start(repo_id=f"{ORG}/no-such-model")
    assert not Download.objects.exists()


def test_a_download_that_would_fill_the_disk_is_refused_before_starting(db, hub_settings, text_model: FakeRepo):
    hub_settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 1 << 60

    with pytest.raises(DownloadRefused, match="Not enough free disk space") as refused:
        download_start(repo_id=text_model.repo_id)

    assert refused.value.status == 507
    assert not Download.objects.exists()


def test_the_worker_checks_the_disk_again_before_fetching(db, hub_settings, text_model: FakeRepo):
    download = download_start(repo_id=text_model.repo_id).download
    hub_settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 1 << 60

    assert attempt(download) == "failed"
    download.refresh_from_db()
    assert download.error.startswith("Not enough free disk space")


def test_pausing_is_refused_once_the_job_is_done(db, text_model: FakeRepo):
    download = download_start(repo_id=text_model.repo_id).download
    attempt(download)

    with pytest.raises(DownloadStateError):
        download_pause(download=download)


def test_a_paused_job_is_not_taken_by_a_worker_and_cancel_removes_its_partial_files(
    db, fake_hub: FakeHub, text_model: FakeRepo
):
    fake_hub.drop_once(text_model.repo_id, "model.safetensors")
    download = download_start(repo_id=text_model.repo_id).download
    with pytest.raises(HubUnavailable):
        attempt(download)
    download_pause(download=download)
    assert download_partial_dir(download).is_dir()

    assert attempt(download, task_id="task-2") == "skipped"

    download_cancel(download=download)
    assert download.status == Download.Status.CANCELLED
    assert not download_partial_dir(download).exists()


def test_a_file_listed_outside_the_repository_is_refused(db, fake_hub: FakeHub, tiny_model_dir: Path):
    repo = text_repo(tiny_model_dir, f"{ORG}/escaping-paths")
    repo.files["../../outside.json"] = b"{}"
    fake_hub.add(repo)

    with pytest.raises(DownloadRefused, match="outside the repository"):
        download_start(repo_id=repo.repo_id)
    assert not Download.objects.exists()
