"""Models already on disk: scanning the models folder and the Hugging Face cache, and deleting them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from catalog.models import LocalModel, ModelKind
from catalog.services import LocalModelInUse, local_model_delete, local_models_scan, profile_upsert
from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings


pytestmark = pytest.mark.usefixtures("db", "hub_settings")


def folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


@pytest.fixture
def models_dir(hub_settings) -> Path:
    path = Path(hub_settings.MLXHUB_MODELS_DIR)
    path.mkdir(parents=True)
    return path


def test_the_scan_registers_the_folders_in_the_models_folder(models_dir: Path, tiny_model_dir: Path):
    shutil.copytree(tiny_model_dir, models_dir / "mlx-community--tiny")
    shutil.copytree(tiny_model_dir, models_dir / "acme" / "nested-tiny")
    shutil.copytree(tiny_model_dir, models_dir / "my-own")
    shutil.copytree(tiny_model_dir, models_dir / ".partial" / "half-done")
    (models_dir / "no-weights").mkdir()
    (models_dir / "no-weights" / "config.json").write_text("{}")

    result = local_models_scan()

    assert sorted(model.repo_id for model in result.registered) == [
        "acme/nested-tiny",
        "local/my-own",
        "mlx-community/tiny",
    ]
    assert len(result.skipped) == 1 and "has no .safetensors weights" in result.skipped[0]
    tiny = LocalModel.objects.get(repo_id="mlx-community/tiny")
    assert (tiny.kind, tiny.size_bytes) == (ModelKind.TEXT, folder_size(tiny_model_dir))


def test_scanning_twice_keeps_one_row_per_folder_and_the_names_people_gave(models_dir: Path, tiny_model_dir: Path):
    shutil.copytree(tiny_model_dir, models_dir / "mlx-community--tiny")
    local_models_scan()
    LocalModel.objects.update(repo_id="renamed/by-someone")

    local_models_scan()

    assert list(LocalModel.objects.values_list("repo_id", flat=True)) == ["renamed/by-someone"]


def test_the_scan_registers_snapshots_in_the_hugging_face_cache(hub_settings, fake_hub: FakeHub):
    snapshot = Path(
        snapshot_download(
            f"{ORG}/tiny-llama-bf16", cache_dir=hub_settings.MLXHUB_HF_CACHE_DIR, endpoint=fake_hub.url, token=False
        )
    )

    result = local_models_scan()

    (registered,) = result.registered
    assert (registered.repo_id, registered.revision, registered.path) == (
        f"{ORG}/tiny-llama-bf16",
        "main",
        str(snapshot.resolve()),
    )
    repo = fake_hub.repos[f"{ORG}/tiny-llama-bf16"]
    assert registered.size_bytes == sum(len(data) for data in repo.files.values())


def test_the_scan_reports_rows_whose_folder_is_gone(models_dir: Path, tiny_model_dir: Path):
    shutil.copytree(tiny_model_dir, models_dir / "mlx-community--tiny")
    (registered,) = local_models_scan().registered
    shutil.rmtree(models_dir / "mlx-community--tiny")

    assert local_models_scan().missing == [registered]


def test_deleting_a_model_in_the_models_folder_removes_it_and_reports_the_bytes(models_dir, tiny_model_dir):
    shutil.copytree(tiny_model_dir, models_dir / "mlx-community--tiny")
    (local_model,) = local_models_scan().registered

    deleted = local_model_delete(local_model=local_model)

    assert (deleted.bytes_freed, deleted.files_removed) == (folder_size(tiny_model_dir), True)
    assert not (models_dir / "mlx-community--tiny").exists()
    assert not LocalModel.objects.exists()


def test_deleting_a_cached_snapshot_frees_its_blobs(hub_settings, fake_hub: FakeHub):
    snapshot_download(
        f"{ORG}/tiny-llama-bf16", cache_dir=hub_settings.MLXHUB_HF_CACHE_DIR, endpoint=fake_hub.url, token=False
    )
    (local_model,) = local_models_scan().registered
    blobs = Path(hub_settings.MLXHUB_HF_CACHE_DIR) / "models--mlx-community--tiny-llama-bf16" / "blobs"
    before = folder_size(blobs)

    deleted = local_model_delete(local_model=local_model)

    assert deleted.files_removed and deleted.bytes_freed == before > 0
    assert not blobs.exists() or folder_size(blobs) == 0
    assert not Path(local_model.path).exists()


def test_a_folder_outside_the_models_folder_is_unregistered_but_its_files_are_kept(tiny_model_dir: Path, tmp_path):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "elsewhere"))
    from catalog.services import local_model_register

    local_model = local_model_register(path=folder)

    deleted = local_model_delete(local_model=local_model)

    assert (deleted.bytes_freed, deleted.files_removed) == (0, False)
    assert folder_size(folder) == folder_size(tiny_model_dir)
    assert not LocalModel.objects.exists()


def test_a_model_a_profile_uses_is_kept_unless_forced(models_dir: Path, tiny_model_dir: Path):
    shutil.copytree(tiny_model_dir, models_dir / "mlx-community--tiny")
    (local_model,) = local_models_scan().registered
    profile_upsert(name="tiny-chat", local_model=local_model)

    with pytest.raises(LocalModelInUse, match="tiny-chat"):
        local_model_delete(local_model=local_model)
    assert LocalModel.objects.exists() and (models_dir / "mlx-community--tiny").is_dir()

    deleted = local_model_delete(local_model=local_model, force=True)
    assert deleted.profiles_deleted == ["tiny-chat"]
    assert not LocalModel.objects.exists()
