"""What every page shares: the one role check, page-or-fragment rendering, and the navigation.

Every page, fragment and action is wrapped in ``role_required``: the role is checked on the server for each
request, so a viewer who posts to a member's endpoint directly gets a 403 even though the page never showed
them the button. Templates hide the controls a role cannot use; the decorator is what enforces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers

from mlxhub.accounts.models import ROLE_RANK, Membership, Role
from mlxhub.accounts.selectors import user_role

PAGE_SIZE = 50
View = TypeVar("View", bound=Callable[..., HttpResponseBase])

# The words a 403 says, by the role that was needed.
NEEDS = {
    Role.VIEWER: "You are not a member of any team yet: ask an admin to add you to one.",
    Role.MEMBER: "Viewers can look but not change anything: ask a team admin for the member role.",
    Role.ADMIN: "Only admins can do this.",
}


def is_htmx(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment (a history restore after a cache miss wants the whole page)."""
    details = getattr(request, "htmx", None)
    return bool(details) and not getattr(details, "history_restore_request", False)


def role_of(request: HttpRequest) -> Role | None:
    """The signed-in user's role, looked up once per request."""
    if not request.user.is_authenticated:
        return None
    if not hasattr(request, "role"):
        request.role = user_role(user=cast(User, request.user))  # type: ignore[attr-defined]
    return cast(Role | None, request.role)  # type: ignore[attr-defined]


def has_role(request: HttpRequest, needed: Role) -> bool:
    role = role_of(request)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


def role_required(needed: Role) -> Callable[[View], View]:
    """Sign-in and at least ``needed``, for a page, a fragment or an action; 403 otherwise."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                if is_htmx(request):
                    # htmx follows HX-Redirect whatever the status: an expired session lands on the sign-in page.
                    response = HttpResponse("Your session has ended; sign in again.", status=401)
                    response["HX-Redirect"] = f"{reverse('login')}?next={request.get_full_path()}"
                    return response
                return redirect_to_login(request.get_full_path())
            if not has_role(request, needed):
                reason = NEEDS[needed] if role_of(request) is not None else NEEDS[Role.VIEWER]
                if is_htmx(request):
                    return HttpResponse(reason, status=403, content_type="text/plain; charset=utf-8")
                raise PermissionDenied(reason)
            return view(request, *args, **kwargs)

        return cast(View, wrapped)

    return decorator


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], *, fragment: str | None = None
) -> TemplateResponse:
    """The page, or for htmx only its ``fragment``; Vary: HX-Request keeps caches from mixing the two."""
    name = fragment if fragment is not None and is_htmx(request) else template
    response = TemplateResponse(request, name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def paginate(request: HttpRequest, rows: Any, *, per_page: int = PAGE_SIZE) -> Page:  # type: ignore[type-arg]
    """One page of ``rows`` from ``?page=`` (out of range: the last page)."""
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    """The request's query string without ``page``, for the pager's links."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def actor(request: HttpRequest) -> User:
    """The user behind a request that role_required has let through."""
    return cast(User, request.user)


@dataclass(frozen=True)
class NavItem:
    url_name: str
    label: str
    role: Role


NAV = (
    NavItem("overview", "Overview", Role.VIEWER),
    NavItem("models", "Models", Role.VIEWER),
    NavItem("discover", "Discover", Role.VIEWER),
    NavItem("downloads", "Downloads", Role.VIEWER),
    NavItem("playground", "Playground", Role.VIEWER),
    NavItem("keys", "API keys", Role.VIEWER),
    NavItem("usage", "Usage", Role.VIEWER),
    NavItem("team", "Team", Role.VIEWER),
    NavItem("routing", "Routing", Role.ADMIN),
)


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Context for the layout: the pages this role may open, the team and role, what the role may change."""
    path = request.path
    if not request.user.is_authenticated or path.startswith("/admin/"):
        return {}  # the admin has its own layout
    role = role_of(request)
    items = []
    for item in NAV:
        if role is None or ROLE_RANK[role] < ROLE_RANK[item.role]:
            continue
        url = reverse(item.url_name)
        current = path == url if url == "/" else path.startswith(url)
        items.append({"url": url, "label": item.label, "current": current})
    teams = [membership.team.name for membership in Membership.objects.filter(user=request.user).select_related("team")]
    return {
        "nav_items": items,
        "nav_role": role,
        "nav_teams": teams,
        "can_write": has_role(request, Role.MEMBER),
        "is_admin": has_role(request, Role.ADMIN),
    }
