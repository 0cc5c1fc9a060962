"""Rows for the routing tests: a team with alice (admin), bob (member), charlie (viewer); a profile; credentials."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from catalog.models import LocalModel, Profile
from routing.models import ProviderCredential
from routing.services import credential_create

SECRET = "sk-test-abcdefghijklmnop-WXYZ"


@pytest.fixture(autouse=True)
def own_encryption_keys(settings: Any) -> list[str]:
    """A key of this test's own, so no test writes a key file into a shared MLXHUB_HOME."""
    settings.MLXHUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return settings.MLXHUB_ENCRYPTION_KEYS


@pytest.fixture
def profile(db: None) -> Profile:
    local_model = LocalModel.objects.create(repo_id="local/tiny", path="/models/tiny")
    return Profile.objects.create(name="tiny", local_model=local_model)


@pytest.fixture
def credential(db: None) -> ProviderCredential:
    return credential_create(name="anthropic-main", provider="anthropic", secret=SECRET)
