"""Downloads that must not take more than they should: bytes past a file's listed size, code files, disk that
another download was promised, and a second fetch of a folder that a dead worker had already moved into place.

Each attempt runs in this process against the fake hub, as in test_downloads.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from catalog import hub
from catalog.constants import PART_SUFFIX
from catalog.hub import HubUnavailable
from catalog.models import Download
from catalog.services import (
    DownloadRefused,
    download_cancel,
    download_model_dir,
    download_partial_dir,
    download_pause,
    download_start,
)
from catalog.tasks import download_run
from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub, FakeRepo, resolve_url, text_repo
from tests.catalog.test_downloads import assert_identical, attempt

fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings

pytestmark = pytest.mark.usefixtures("hub_settings")

WEIGHTS = "model.safetensors"
# Far more than a socket's buffers hold, so a client that kept reading would be seen taking it.
FLOOD = 32 * 1024 * 1024


@pytest.fixture
def text_model(request, fake_hub: FakeHub, tiny_model_dir: Path) -> FakeRepo:
    return fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-{request.node.name[5:60].replace('[', '-')}"))


def stream(fake_hub: FakeHub, repo: FakeRepo, part: Path) -> None:
    size = len(repo.files[WEIGHTS])
    url = resolve_url(fake_hub, repo.repo_id, WEIGHTS)
    hub.stream_file(url, part, token=None, expected_size=size, on_bytes=lambda count: None, what=WEIGHTS)


@pytest.mark.parametrize("announce", [True, False], ids=["with-content-length", "without-content-length"])
def test_a_whole_answer_longer_than_the_listed_size_stops_at_that_size(
    fake_hub: FakeHub, text_model: FakeRepo, tmp_path: Path, announce: bool
):
    fake_hub.overrun_once(text_model.repo_id, WEIGHTS, FLOOD, announce=announce)
    part = tmp_path / "weights.part"

    with pytest.raises(hub.HubError, match="more than the"):
        stream(fake_hub, text_model, part)

    if announce:
        assert not part.exists()  # a Content-Length past the size is refused before a byte is written
    else:
        assert part.stat().st_size == len(text_model.files[WEIGHTS])


def test_a_resumed_range_answer_that_overruns_never_grows_the_file_past_its_size(
    fake_hub: FakeHub, text_model: FakeRepo, tmp_path: Path
):
    size = len(text_model.files[WEIGHTS])
    part = tmp_path / "weights.part"
    part.write_bytes(text_model.files[WEIGHTS][: size // 3])
    fake_hub.overrun_once(text_model.repo_id, WEIGHTS, FLOOD, announce=False)

    with pytest.raises(hub.HubError, match="more than the"):
        stream(fake_hub, text_model, part)

    request = fake_hub.file_requests(text_model.repo_id, WEIGHTS)[-1]
    assert (request.range, request.status) == (f"bytes={size // 3}-", 206)
    assert part.stat().st_size == size
    assert part.read_bytes() == text_model.files[WEIGHTS]  # the bytes up to the size are the file's own


def test_a_job_whose_file_overruns_fails_with_a_clear_error_and_keeps_no_oversized_file(
    db, fake_hub: FakeHub, text_model: FakeRepo
):
    fake_hub.drop_once(text_model.repo_id, WEIGHTS)
    download = download_start(repo_id=text_model.repo_id).download
    with pytest.raises(HubUnavailable):
        attempt(download)
    fake_hub.overrun_once(text_model.repo_id, WEIGHTS, FLOOD, announce=False)

    assert attempt(download, task_id="task-2") == "failed"

    download.refresh_from_db()
    assert download.status == Download.Status.FAILED
    assert f"{text_model.repo_id}/{WEIGHTS}: the hub sent more than the" in download.error
    assert not (download_partial_dir(download) / f"{WEIGHTS}{PART_SUFFIX}").exists()
    assert not download_model_dir(download).exists()
    resumed = fake_hub.file_requests(text_model.repo_id, WEIGHTS)[-1]
    assert resumed.range is not None and resumed.bytes_sent < FLOOD  # the worker hung up, it did not read on


def test_python_files_in_a_repository_are_never_fetched(db, fake_hub: FakeHub, tiny_model_dir: Path):
    repo = text_repo(tiny_model_dir, f"{ORG}/limits-remote-code")
    repo.files["modeling_evil.py"] = b"import os\nos.system('echo owned')\n"
    repo.files["sub/configuration_evil.py"] = b"raise SystemExit\n"
    fake_hub.add(repo)
    download = download_start(repo_id=repo.repo_id).download

    assert not any(item["path"].endswith(".py") for item in download.files)
    assert attempt(download) == "done"

    folder = download_model_dir(download)
    assert not list(folder.rglob("*.py"))
    assert fake_hub.file_requests(repo.repo_id, "modeling_evil.py") == []
    assert fake_hub.file_requests(repo.repo_id, "sub/configuration_evil.py") == []
    code_free = {path: data for path, data in repo.files.items() if not path.endswith(".py")}
    assert_identical(folder, FakeRepo(repo.repo_id, code_free))


def test_two_downloads_whose_sum_exceeds_the_free_space_cannot_both_start(
    db, hub_settings, fake_hub: FakeHub, tiny_model_dir: Path
):
    first_repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-disk-first"))
    second_repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-disk-second"))
    size = sum(map(len, first_repo.files.values()))
    hub_settings.MLXHUB_DOWNLOAD_FREE_BYTES = size * 3 // 2  # room for one of them, not for both

    first = download_start(repo_id=first_repo.repo_id).download
    with pytest.raises(DownloadRefused, match="promised to downloads in progress") as refused:
        download_start(repo_id=second_repo.repo_id)

    assert refused.value.status == 507
    assert f"needs {sum(map(len, second_repo.files.values())):,} bytes" in refused.value.message
    assert list(Download.objects.values_list("repo_id", flat=True)) == [first_repo.repo_id]
    assert attempt(first) == "done"  # a finished job holds no reservation (its bytes are on the disk now)
    assert download_start(repo_id=second_repo.repo_id).created


def test_a_paused_download_keeps_its_reservation_and_a_cancelled_one_frees_it(
    db, hub_settings, fake_hub: FakeHub, tiny_model_dir: Path
):
    first_repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-reserve-first"))
    second_repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-reserve-second"))
    hub_settings.MLXHUB_DOWNLOAD_FREE_BYTES = sum(map(len, first_repo.files.values())) * 3 // 2
    first = download_pause(download=download_start(repo_id=first_repo.repo_id).download)

    with pytest.raises(DownloadRefused, match="promised"):
        download_start(repo_id=second_repo.repo_id)
    download_cancel(download=first)

    assert download_start(repo_id=second_repo.repo_id).created


def test_the_worker_counts_the_other_jobs_reservations_but_not_its_own(
    db, hub_settings, fake_hub: FakeHub, tiny_model_dir: Path
):
    repo = fake_hub.add(text_repo(tiny_model_dir, f"{ORG}/limits-worker-disk"))
    size = sum(map(len, repo.files.values()))
    hub_settings.MLXHUB_DOWNLOAD_FREE_BYTES = size + 10
    download = download_start(repo_id=repo.repo_id).download
    # Another job was admitted meanwhile (its reservation is real, whoever made it).
    Download.objects.create(repo_id=f"{ORG}/limits-other", bytes_total=100, status=Download.Status.QUEUED)

    assert attempt(download) == "failed"
    download.refresh_from_db()
    assert "100 are promised to downloads in progress" in download.error


class WorkerDied(BaseException):
    """The worker's process ends here, as under SIGKILL: no except clause of the product catches it."""


def resolves(fake_hub: FakeHub, repo: FakeRepo) -> list[fakehub.RecordedRequest]:
    return [
        request
        for request in fake_hub.requests
        if request.method == "GET" and request.path.startswith(f"/{repo.repo_id}/resolve/")
    ]


def test_a_worker_that_dies_between_install_and_finish_is_finished_without_fetching_again(
    db, fake_hub: FakeHub, text_model: FakeRepo, monkeypatch
):
    from catalog.services import downloads

    download = download_start(repo_id=text_model.repo_id).download

    def die_after_the_move(**kwargs):  # registering is the step between the move into place and "done"
        raise WorkerDied

    with monkeypatch.context() as patched:
        patched.setattr(downloads, "local_model_register", die_after_the_move)
        with pytest.raises(WorkerDied):
            attempt(download)
    fetched = len(resolves(fake_hub, text_model))
    download.refresh_from_db()
    # What the dead worker left: a running row with its lease, the folder in place, no partial folder.
    assert download.status == Download.Status.RUNNING and download.local_model is None
    assert download_model_dir(download).is_dir() and not download_partial_dir(download).exists()
    Download.objects.filter(pk=download.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    assert download_run(download.pk) == "done"  # the next worker's task takes the job over

    assert len(resolves(fake_hub, text_model)) == fetched  # not one file fetched again
    download.refresh_from_db()
    assert (download.status, download.bytes_done, download.attempts) == ("done", download.bytes_total, 2)
    assert download.local_model is not None and Path(download.local_model.path) == download_model_dir(download)
    assert_identical(download_model_dir(download), text_model)
    assert [path.name for path in download_partial_dir(download).parent.iterdir() if path.suffix != ".lock"] == []


def test_an_older_copy_of_the_folder_is_not_taken_for_this_jobs_install(db, fake_hub: FakeHub, text_model: FakeRepo):
    first = download_start(repo_id=text_model.repo_id).download
    assert attempt(first) == "done"
    again = download_start(repo_id=text_model.repo_id).download

    assert attempt(again, task_id="task-2") == "done"

    assert len(resolves(fake_hub, text_model)) == 2 * len(text_model.files)  # a new job fetches anew
    assert_identical(download_model_dir(again), text_model)


def test_a_range_answer_that_starts_at_the_wrong_byte_is_not_appended(db, fake_hub: FakeHub, text_model: FakeRepo):
    fake_hub.drop_once(text_model.repo_id, WEIGHTS)
    download = download_start(repo_id=text_model.repo_id).download
    with pytest.raises(HubUnavailable):
        attempt(download)
    fake_hub.misaligned_once(text_model.repo_id, WEIGHTS)

    with pytest.raises(HubUnavailable, match="did not start at byte"):
        attempt(download, task_id="task-2")
    assert not (download_partial_dir(download) / f"{WEIGHTS}{PART_SUFFIX}").exists()

    assert attempt(download, task_id="task-3") == "done"
    assert fake_hub.file_requests(text_model.repo_id, WEIGHTS)[-1].range is None  # the file was started over
    assert_identical(download_model_dir(download), text_model)
