"""Rows for the accounts tests: a team with alice (admin), bob (member) and charlie (viewer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser

from catalog.models import Profile
from catalog.services import local_model_register, profile_upsert
from mlxhub.accounts.services import CreatedApiKey, api_key_create
from tests.mlxhub.factories import TINY_PROFILE


@pytest.fixture
def make_api_key(db: None) -> Callable[..., CreatedApiKey]:
    def make(owner: AbstractUser, name: str = "laptop", **kwargs: Any) -> CreatedApiKey:
        return api_key_create(owner=owner, name=name, **kwargs)

    return make


@pytest.fixture
def tiny_profile(db: None, tiny_model_dir: Path) -> Profile:
    local_model = local_model_register(path=tiny_model_dir)
    return profile_upsert(name=TINY_PROFILE, local_model=local_model)
