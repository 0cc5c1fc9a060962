from __future__ import annotations

from typing import Any

import pytest

from mlxhub.accounts.models import Role, Team
from tests.mlxhub.factories import make_user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team(db: None) -> Team:
    return Team.objects.create(name="Research", slug="research")


@pytest.fixture
def alice(team: Team) -> Any:
    """Team admin."""
    return make_user("alice", team=team, role=Role.ADMIN)


@pytest.fixture
def bob(team: Team) -> Any:
    """Team member."""
    return make_user("bob", team=team, role=Role.MEMBER)
