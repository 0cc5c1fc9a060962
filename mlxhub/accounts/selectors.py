from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from mlxhub.accounts.models import ROLE_RANK, ApiKey, Membership, Role


def user_role(*, user: User) -> Role | None:
    """The user's strongest role over all teams; superusers are admins everywhere."""
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    roles = [Role(value) for value in Membership.objects.filter(user=user).values_list("role", flat=True)]
    return max(roles, key=ROLE_RANK.__getitem__, default=None)


def api_keys_visible_to(*, user: User) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("owner", "team").order_by("-created_at")
    if user_role(user=user) == Role.ADMIN:
        return keys
    return keys.filter(owner=user)
