"""Rows for the accounts tests: a team with alice (admin), bob (member) and charlie (viewer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser

from catalog.models import Profile
from catalog.services import local_model_register, profile_upsert
from mlxhub.accounts.models import Role, Team
from mlxhub.accounts.services import CreatedApiKey, api_key_create
from tests.mlxhub.factories import TINY_PROFILE, make_user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2 at production strength costs about a second per user; these tests check roles, not hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team(db: None) -> Team:
    return Team.objects.create(name="Research", slug="research")


@pytest.fixture
def alice(team: Team) -> AbstractUser:
    """Team admin."""
    return make_user("alice", team=team, role=Role.ADMIN)


@pytest.fixture
def bob(team: Team) -> AbstractUser:
    """Team member."""
    return make_user("bob", team=team, role=Role.MEMBER)


@pytest.fixture
def charlie(team: Team) -> AbstractUser:
    """Team viewer."""
    return make_user("charlie", team=team, role=Role.VIEWER)


@pytest.fixture
def make_api_key(db: None) -> Callable[..., CreatedApiKey]:
    def make(owner: AbstractUser, name: str = "laptop", **kwargs: Any) -> CreatedApiKey:
        return api_key_create(owner=owner, name=name, **kwargs)

    return make


@pytest.fixture
def tiny_profile(db: None, tiny_model_dir: Path) -> Profile:
    local_model = local_model_register(path=tiny_model_dir)
    return profile_upsert(name=TINY_PROFILE, local_model=local_model)
