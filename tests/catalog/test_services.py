"""Registering model folders and the profiles that serve them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models.deletion import ProtectedError

from catalog.models import LocalModel, ModelKind, Profile
from catalog.services import ModelFolderError, local_model_register, profile_upsert
from tests.catalog.conftest import folder_size


def test_registering_a_folder_reads_what_the_model_says_about_itself(db, model_copy: Path):
    local_model = local_model_register(path=model_copy)

    assert local_model.repo_id == "local/tiny-copy"
    assert local_model.path == str(model_copy.resolve())
    assert local_model.kind == ModelKind.TEXT
    assert local_model.architecture == "LlamaForCausalLM"
    assert local_model.context_length == 2048
    assert local_model.size_bytes == folder_size(model_copy) > 0


def test_registering_the_same_folder_twice_keeps_one_row(db, model_copy: Path):
    first = local_model_register(path=model_copy)
    second = local_model_register(path=model_copy / ".." / model_copy.name, repo_id="acme/tiny")

    assert first.pk == second.pk
    assert LocalModel.objects.get().repo_id == "acme/tiny"


def test_a_folder_with_a_vision_config_is_a_vision_model(db, model_copy: Path):
    config = json.loads((model_copy / "config.json").read_text())
    (model_copy / "config.json").write_text(json.dumps({**config, "vision_config": {}}))

    assert local_model_register(path=model_copy).kind == ModelKind.VISION


@pytest.mark.parametrize(
    ("damage", "message"),
    [("config.json", "has no config.json"), ("model.safetensors", "has no .safetensors weights")],
)
def test_a_folder_that_is_not_a_model_is_refused(db, model_copy: Path, damage, message):
    (model_copy / damage).unlink()

    with pytest.raises(ModelFolderError, match=message):
        local_model_register(path=model_copy)

    assert not LocalModel.objects.exists()


def test_a_config_that_is_not_json_is_refused(db, model_copy: Path):
    (model_copy / "config.json").write_text("{not json")

    with pytest.raises(ModelFolderError, match="not valid JSON"):
        local_model_register(path=model_copy)


def test_a_missing_folder_is_refused(db, tmp_path: Path):
    with pytest.raises(ModelFolderError, match="is not a folder"):
        local_model_register(path=tmp_path / "nowhere")


def test_upserting_a_profile_updates_it_in_place(db, model_copy: Path):
    local_model = local_model_register(path=model_copy)
    first = profile_upsert(name="chat", local_model=local_model, default_max_tokens=64)
    Profile.objects.filter(pk=first.pk).update(enabled=False)

    second = profile_upsert(name="chat", local_model=local_model, pinned=True, system_prompt="Be brief.")

    assert second.pk == first.pk
    assert Profile.objects.count() == 1
    stored = Profile.objects.get()
    assert (stored.pinned, stored.enabled, stored.default_max_tokens, stored.system_prompt) == (
        True,
        True,
        None,
        "Be brief.",
    )


def test_a_profile_falls_back_to_the_models_context_length(db, model_copy: Path):
    profile = profile_upsert(name="chat", local_model=local_model_register(path=model_copy))
    assert profile.effective_context_length() == 2048

    profile.context_length = 512
    assert profile.effective_context_length() == 512


def test_a_model_that_a_profile_serves_cannot_be_deleted(db, model_copy: Path):
    local_model = local_model_register(path=model_copy)
    profile_upsert(name="chat", local_model=local_model)

    with pytest.raises(ProtectedError):
        local_model.delete()


def test_register_model_serves_a_folder_under_a_name(db, model_copy: Path, capsys):
    call_command("register_model", str(model_copy), "--name", "tiny", "--pinned", "--max-tokens", "32")

    profile = Profile.objects.select_related("local_model").get(name="tiny")
    assert profile.local_model.path == str(model_copy.resolve())
    assert profile.pinned is True
    assert profile.default_max_tokens == 32
    assert f"Serving {model_copy.resolve()} as 'tiny'." in capsys.readouterr().out


def test_register_model_refuses_a_folder_that_is_not_a_model(db, tmp_path: Path):
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("register_model", str(tmp_path / "nowhere"), "--name", "nothing")

    assert not Profile.objects.exists()
