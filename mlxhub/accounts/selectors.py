from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from mlxhub.accounts.models import ROLE_RANK, ApiKey, Membership, Role, Team


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


def teams_visible_to(*, user: User) -> QuerySet[Team]:
    """Superusers see every team; everyone else the teams they belong to."""
    teams = Team.objects.order_by("name")
    return teams if user.is_superuser else teams.filter(memberships__user=user).distinct()


def team_members(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("user__username")


def team_admin_of(*, user: User, team: Team) -> bool:
    """Whether ``user`` may change ``team``'s people: a superuser, or an admin of that team."""
    return user.is_superuser or Membership.objects.filter(team=team, user=user, role=Role.ADMIN).exists()


def teams_administered_by(*, user: User) -> QuerySet[Team]:
    teams = Team.objects.order_by("name")
    return teams if user.is_superuser else teams.filter(memberships__user=user, memberships__role=Role.ADMIN)
