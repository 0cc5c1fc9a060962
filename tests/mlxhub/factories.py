"""Row factories shared by the accounts tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from mlxhub.accounts.models import Membership, Role, Team

PASSWORD = "correct-horse-battery-staple"
TINY_PROFILE = "tiny-chat"


def make_user(username: str, *, team: Team | None = None, role: Role | None = None, **extra: Any) -> AbstractUser:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
    if team is not None and role is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user
