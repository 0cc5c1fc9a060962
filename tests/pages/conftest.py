"""Signed-in browsers (Django's test client) for the named users: alice (team admin), bob (member),
charlie (viewer); root is a superuser. The in-process suite runs no collectstatic, so static files are
served by name."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from mlxhub.accounts.models import Role
from tests.mlxhub.factories import make_user


@pytest.fixture(autouse=True)
def static_files_by_name(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def signed_in(user: Any) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def root(team: Any) -> Any:
    return make_user("root", team=team, role=Role.ADMIN, is_superuser=True, is_staff=True)


@pytest.fixture
def as_alice(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def as_bob(bob: Any) -> Client:
    return signed_in(bob)


@pytest.fixture
def as_charlie(charlie: Any) -> Client:
    return signed_in(charlie)


@pytest.fixture
def as_root(root: Any) -> Client:
    return signed_in(root)


HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def tiny_profile(db: None, tiny_model_dir: Any) -> Any:
    from catalog.services import local_model_register, profile_upsert
    from tests.mlxhub.factories import TINY_PROFILE

    return profile_upsert(name=TINY_PROFILE, local_model=local_model_register(path=tiny_model_dir))


def make_download(repo_id: str, status: str = "running", **fields: Any) -> Any:
    """A job row as the worker leaves it (no worker runs in these tests)."""
    from catalog.models import Download

    defaults = {"bytes_total": 4000, "bytes_done": 1000, "speed_bps": 500.0, "eta_seconds": 6}
    return Download.objects.create(repo_id=repo_id, status=status, **{**defaults, **fields})
