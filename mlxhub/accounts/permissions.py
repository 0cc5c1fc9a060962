"""Role checks for the control API: every view says which role reads and which writes."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from mlxhub.accounts.models import ROLE_RANK, ApiKey, Role
from mlxhub.accounts.selectors import user_role


class HasRole(permissions.BasePermission):
    """Viewers read; members write; views may ask for more with ``read_role``/``write_role``. A request made
    with an API key needs a control key: an inference key (an application's) reaches /v1 only."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        if isinstance(request.auth, ApiKey) and not request.auth.is_control:
            self.message = (
                "This API key's scope is inference: it calls /v1 only. "
                "The control API needs a control key (make one on the API keys page)."
            )
            return False
        role = user_role(user=user)
        if role is None:
            self.message = "You are not a member of any team."
            return False
        if request.method in permissions.SAFE_METHODS:
            needed = getattr(view, "read_role", Role.VIEWER)
        else:
            needed = getattr(view, "write_role", Role.MEMBER)
        request.role = role  # type: ignore[attr-defined]
        return ROLE_RANK[role] >= ROLE_RANK[needed]
