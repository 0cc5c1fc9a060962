"""Who a data-plane request is made by: an API key, or a signed-in user (the pages' playground)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User

from mlxhub.accounts.limits import usage_prepare
from mlxhub.accounts.models import ROLE_RANK, ApiKey, Membership, Role, Team


@dataclass(frozen=True)
class Caller:
    user: User
    team: Team | None
    api_key: ApiKey | None = None  # None: a signed-in user, by session
    role: Role | None = None  # a signed-in user's strongest role (a key's grant stands for itself)

    @property
    def may_serve(self) -> bool:
        """A key may serve what its allow-list says; a signed-in user needs at least the member role."""
        return self.api_key is not None or (self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[Role.MEMBER])

    @classmethod
    def of_key(cls, api_key: ApiKey) -> Caller:
        return cls(user=api_key.owner, team=api_key.team, api_key=api_key)

    @property
    def key_prefix(self) -> str:
        return self.api_key.prefix if self.api_key is not None else ""

    def allows_model(self, model_name: str) -> bool:
        """A key's allow-list; a signed-in user may use every model (their team's limits still apply)."""
        return self.api_key is None or self.api_key.allows_model(model_name)


async def caller_for_user(*, user: User) -> Caller:
    """A signed-in user acts for the team where their role is strongest (the first such team by name);
    superusers are admins everywhere, as on every page."""
    memberships = [m async for m in Membership.objects.select_related("team").filter(user=user).order_by("team__name")]
    strongest = max(memberships, key=lambda membership: ROLE_RANK[Role(membership.role)], default=None)
    role = Role.ADMIN if user.is_superuser else (Role(strongest.role) if strongest is not None else None)
    team = strongest.team if strongest is not None else None
    await usage_prepare(api_key=None, team=team)  # before the reservation, which must not wait on the database
    return Caller(user=user, team=team, role=role)
