"""The catalog reads a model's context length as the engine does, so a reservation is bounded by what is enforced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from catalog.model_facts import context_length_of
from catalog.services import local_model_register, profile_upsert
from inference.engine.text import context_length_of as engine_context_length_of
from inference.engine.types import GenerationRequest
from inference.engine.vision_runtime import _context_length as vision_context_length
from inference.engine_requests import local_cost


@pytest.mark.parametrize("field", ["max_position_embeddings", "max_seq_len", "n_positions", "seq_length"])
def test_every_field_the_engine_reads_gives_the_catalog_the_same_context_length(db, tmp_path, tiny_model_dir, field):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    config = json.loads((folder / "config.json").read_text())
    config.pop("max_position_embeddings", None)
    config[field] = 300
    (folder / "config.json").write_text(json.dumps(config))

    profile = profile_upsert(name="short", local_model=local_model_register(path=folder))

    assert profile.effective_context_length() == engine_context_length_of(str(folder), None) == 300
    # A request without max_tokens may run to the end of the context: its reservation says so.
    request = GenerationRequest(model={"key": "k", "path": str(folder)}, messages=[{"role": "user", "content": "hi"}])  # type: ignore[typeddict-item]
    assert local_cost(request, context_length=profile.effective_context_length()) == 300


def test_a_vision_model_reads_its_text_part_first_as_its_runtime_does():
    config = {"vision_config": {}, "max_position_embeddings": 1024, "text_config": {"max_seq_len": 8192}}

    assert context_length_of(config, "vision") == vision_context_length(config, None) == 8192
    assert context_length_of({"n_positions": 512, "text_config": {"max_position_embeddings": 64}}) == 512


def test_a_config_without_a_usable_number_has_no_context_length():
    assert context_length_of({"max_position_embeddings": "long", "seq_length": 0, "n_positions": True}) is None
