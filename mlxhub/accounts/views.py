"""Pages for people: sign-in, password change, API keys (/keys/) and the team (/team/).

Every view is wrapped in ``role_required``; each write calls one service. A new key's secret is rendered once,
in the answer to the POST that made it (never stored, never in a redirect), with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.selectors import admin_actions_for_team
from catalog.selectors import profiles_servable
from mlxhub.accounts.forms import KeyCreateForm, KeyEditForm, KeyLimitsForm, RoleForm, UserAddForm
from mlxhub.accounts.limits import limits_usage
from mlxhub.accounts.models import ApiKey, Membership, Role, Team
from mlxhub.accounts.selectors import (
    api_keys_visible_to,
    team_admin_of,
    team_members,
    teams_administered_by,
    teams_visible_to,
)
from mlxhub.accounts.services import (
    LIMIT_FIELDS,
    AccountError,
    api_key_create,
    api_key_revoke,
    api_key_update,
    membership_role_change,
    user_create,
    user_password_changed,
    user_set_active,
)
from mlxhub.pages import actor, has_role, is_htmx, paginate, render_page, role_required

FORM_INVALID = 422  # htmx swaps it (see the htmx-config meta in pages/base.html): the form comes back with errors


def login_locked_out(request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None) -> Any:
    """What django-axes answers a sign-in refused after repeated failures (the pages' and the admin's): words
    that say why and for how long, with 429."""
    minutes = max(1, round(get_cool_off(request).total_seconds() / 60)) if get_cool_off(request) else None
    context = {
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "failures": settings.AXES_FAILURE_LIMIT,
        "minutes": minutes,
    }
    return TemplateResponse(request, "registration/locked_out.html", context, status=429).render()


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's view, with the audit row written in the transaction that saves the new password."""

    def form_valid(self, form: Any) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            user_password_changed(user=form.user, actor=form.user)
        return response


# API keys.
def _model_names() -> list[str]:
    return list(profiles_servable().values_list("name", flat=True))


def _key_teams(request: HttpRequest) -> Any:
    return teams_visible_to(user=actor(request))


def _keys_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    user = actor(request)
    keys = api_keys_visible_to(user=user)
    page = paginate(request, keys)
    return {
        "page": page,
        "keys": page.object_list,
        "show_owner": has_role(request, Role.ADMIN),
        "base_url": request.build_absolute_uri("/v1"),
        "anthropic_base_url": request.build_absolute_uri("/").rstrip("/"),
        "example_model": next(iter(_model_names()), "demo"),
        **extra,
    }


def _create_forms(request: HttpRequest, data: Any = None) -> tuple[KeyCreateForm, KeyLimitsForm | None]:
    # The user's own (first) team is the default, also for a superuser who may pick any.
    own = Membership.objects.filter(user=actor(request)).select_related("team").order_by("team__name").first()
    teams = _key_teams(request)
    form = KeyCreateForm(data, teams=teams, models=_model_names(), preferred=own.team if own else None)
    limits = KeyLimitsForm(data, prefix="limits") if has_role(request, Role.ADMIN) else None
    return form, limits


@role_required(Role.VIEWER)
def keys_page(request: HttpRequest) -> HttpResponse:
    form, limits_form = _create_forms(request)
    context = _keys_context(request, form=form, limits_form=limits_form)
    return render_page(request, "accounts/keys.html", context, fragment="accounts/partials/keys_table.html")


@require_POST
@role_required(Role.MEMBER)
def key_create(request: HttpRequest) -> HttpResponse:
    form, limits_form = _create_forms(request, request.POST)
    if not form.is_valid() or (limits_form is not None and not limits_form.is_valid()):
        context = _keys_context(request, form=form, limits_form=limits_form)
        template = "accounts/partials/key_form.html" if is_htmx(request) else "accounts/keys.html"
        return TemplateResponse(request, template, context, status=FORM_INVALID)
    limits = None
    if limits_form is not None:
        limits = {name: limits_form.cleaned_data[name] for name in LIMIT_FIELDS}
    created = api_key_create(
        owner=actor(request),
        name=form.cleaned_data["name"],
        team=form.cleaned_data["team"],
        allowed_models=form.cleaned_data["allowed_models"],
        expires_at=form.cleaned_data["expires_on"],
        scope=form.cleaned_data["scope"],
        limits=limits,
        actor=actor(request),
    )
    fresh_form, fresh_limits = _create_forms(request)
    context = _keys_context(request, created=created, form=fresh_form, limits_form=fresh_limits)
    if is_htmx(request):
        response = TemplateResponse(request, "accounts/partials/key_create_answer.html", context)
        response["HX-Trigger"] = "keys-changed"
    else:
        response = TemplateResponse(request, "accounts/keys.html", context)
    # The secret is in this answer and nowhere else: no cache may keep it.
    response["Cache-Control"] = "no-store"
    return response


def _visible_key(request: HttpRequest, pk: int) -> ApiKey:
    return get_object_or_404(api_keys_visible_to(user=actor(request)), pk=pk)


def _key_detail_context(request: HttpRequest, api_key: ApiKey, **extra: Any) -> dict[str, Any]:
    initial = {
        "name": api_key.name,
        "allowed_models": api_key.allowed_models,
        "scope": api_key.scope,
        "expires_on": api_key.expires_at.date() if api_key.expires_at else None,
    }
    limits_initial = {name: getattr(api_key, name) for name in LIMIT_FIELDS}
    admin = has_role(request, Role.ADMIN)
    return {
        "api_key": api_key,
        "usage": limits_usage(owner=api_key),
        "edit_form": extra.pop("edit_form", None) or KeyEditForm(initial=initial, models=_model_names(), admin=admin),
        "limits_form": extra.pop("limits_form", None) or KeyLimitsForm(initial=limits_initial, prefix="limits"),
        "base_url": request.build_absolute_uri("/v1"),
        "anthropic_base_url": request.build_absolute_uri("/").rstrip("/"),
        "example_model": (api_key.allowed_models or _model_names() or ["demo"])[0],
        **extra,
    }


@role_required(Role.VIEWER)
def key_detail(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = _visible_key(request, pk)
    return render_page(request, "accounts/key_detail.html", _key_detail_context(request, api_key))


@require_POST
@role_required(Role.MEMBER)
def key_edit(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = _visible_key(request, pk)
    # A member's form has the name only: whatever else is posted is not theirs to change.
    form = KeyEditForm(request.POST, models=_model_names(), admin=has_role(request, Role.ADMIN))
    if not form.is_valid():
        context = _key_detail_context(request, api_key, edit_form=form)
        return TemplateResponse(request, "accounts/key_detail.html", context, status=FORM_INVALID)
    api_key_update(api_key=api_key, actor=actor(request), **form.changes())
    messages.success(request, f"Saved the key “{api_key.name}”.")
    return HttpResponseRedirect(reverse("key-detail", args=[api_key.pk]))


@require_POST
@role_required(Role.ADMIN)
def key_limits(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = _visible_key(request, pk)
    form = KeyLimitsForm(request.POST, prefix="limits")
    if not form.is_valid():
        context = _key_detail_context(request, api_key, limits_form=form)
        return TemplateResponse(request, "accounts/key_detail.html", context, status=FORM_INVALID)
    api_key_update(api_key=api_key, actor=actor(request), **{name: form.cleaned_data[name] for name in LIMIT_FIELDS})
    messages.success(request, f"Saved the limits of “{api_key.name}”.")
    return HttpResponseRedirect(reverse("key-detail", args=[api_key.pk]))


@require_POST
@role_required(Role.MEMBER)
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = api_key_revoke(api_key=_visible_key(request, pk), actor=actor(request))
    if is_htmx(request):
        context = {"api_key": api_key, "show_owner": has_role(request, Role.ADMIN)}
        return TemplateResponse(request, "accounts/partials/key_row.html", context)
    messages.success(request, f"Revoked the key “{api_key.name}”: it no longer works.")
    return HttpResponseRedirect(request.POST.get("next") or reverse("keys"))


# The team.
def _chosen_team(request: HttpRequest) -> tuple[Team | None, list[Team]]:
    teams = list(teams_visible_to(user=actor(request)))
    wanted = request.GET.get("team") or request.POST.get("team")
    chosen = next((team for team in teams if team.slug == wanted), teams[0] if teams else None)
    return chosen, teams


def _team_context(request: HttpRequest, team: Team | None, teams: list[Team], **extra: Any) -> dict[str, Any]:
    members = (
        team_members(team=team).annotate(
            key_count=Count("user__api_keys", filter=Q(user__api_keys__revoked_at__isnull=True))
        )
        if team is not None
        else Membership.objects.none()
    )
    return {
        "team": team,
        "teams": teams,
        "members": members,
        "can_manage": team is not None and team_admin_of(user=actor(request), team=team),
        "roles": Role.choices,
        "add_form": extra.pop("add_form", None) or UserAddForm(),
        **extra,
    }


@role_required(Role.VIEWER)
def team_page(request: HttpRequest) -> HttpResponse:
    team, teams = _chosen_team(request)
    context = _team_context(request, team, teams)
    return render_page(request, "accounts/team.html", context, fragment="accounts/partials/members_table.html")


@role_required(Role.VIEWER)
def team_log(request: HttpRequest) -> HttpResponse:
    """The team's admin-action log, a fragment loaded after the page (paged)."""
    team, _ = _chosen_team(request)
    actions = admin_actions_for_team(team=team) if team is not None else []
    page = paginate(request, actions, per_page=25)
    context = {"team": team, "page": page, "actions": page.object_list, "query": f"team={team.slug if team else ''}"}
    return render_page(request, "accounts/team_log.html", context, fragment="accounts/partials/team_log.html")


def _managed_team(request: HttpRequest, team: Team) -> None:
    if not team_admin_of(user=actor(request), team=team):
        raise AccountError(f"Only an admin of {team.name} changes its people.")


def _team_redirect(team: Team) -> HttpResponse:
    return HttpResponseRedirect(f"{reverse('team')}?team={team.slug}")


def _refused(request: HttpRequest, team: Team, reason: str) -> HttpResponse:
    if is_htmx(request):
        return HttpResponse(reason, status=409, content_type="text/plain; charset=utf-8")
    messages.error(request, reason)
    return _team_redirect(team)


@require_POST
@role_required(Role.ADMIN)
def team_add_user(request: HttpRequest) -> HttpResponse:
    team = get_object_or_404(teams_administered_by(user=actor(request)), slug=request.POST.get("team", ""))
    form = UserAddForm(request.POST)
    if not form.is_valid():
        context = _team_context(request, team, list(teams_visible_to(user=actor(request))), add_form=form)
        return TemplateResponse(request, "accounts/team.html", context, status=FORM_INVALID)
    try:
        created = user_create(
            username=form.cleaned_data["username"],
            team=team,
            role=form.cleaned_data["role"],
            password=form.cleaned_data["password"] or None,
            actor=actor(request),
        )
    except AccountError as exc:
        form.add_error("username" if "user named" in str(exc) else "password", str(exc))
        context = _team_context(request, team, list(teams_visible_to(user=actor(request))), add_form=form)
        return TemplateResponse(request, "accounts/team.html", context, status=FORM_INVALID)
    context = _team_context(request, team, list(teams_visible_to(user=actor(request))), created=created)
    response = TemplateResponse(request, "accounts/team.html", context)
    response["Cache-Control"] = "no-store"  # a generated password is on this page, once
    return response


@require_POST
@role_required(Role.ADMIN)
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("team", "user"), pk=pk)
    form = RoleForm(request.POST)
    try:
        _managed_team(request, membership.team)
        if not form.is_valid():
            raise AccountError("Choose admin, member or viewer.")
        membership = membership_role_change(membership=membership, role=form.cleaned_data["role"], actor=actor(request))
    except AccountError as exc:
        return _refused(request, membership.team, str(exc))
    if is_htmx(request):
        return _member_row(request, membership)
    messages.success(request, f"{membership.user.username} is now {membership.get_role_display().lower()}.")
    return _team_redirect(membership.team)


@require_POST
@role_required(Role.ADMIN)
def member_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Deactivate or reactivate the user behind a membership (``active`` = 0 or 1)."""
    membership = get_object_or_404(Membership.objects.select_related("team", "user"), pk=pk)
    try:
        _managed_team(request, membership.team)
        user_set_active(user=membership.user, active=request.POST.get("active") == "1", actor=actor(request))
    except AccountError as exc:
        return _refused(request, membership.team, str(exc))
    if is_htmx(request):
        return _member_row(request, membership)
    return _team_redirect(membership.team)


def _member_row(request: HttpRequest, membership: Membership) -> HttpResponse:
    member = team_members(team=membership.team).annotate(
        key_count=Count("user__api_keys", filter=Q(user__api_keys__revoked_at__isnull=True))
    )
    context = {
        "member": member.get(pk=membership.pk),
        "can_manage": True,
        "roles": Role.choices,
        "team": membership.team,
    }
    response = TemplateResponse(request, "accounts/partials/member_row.html", context)
    response["HX-Trigger"] = "team-changed"  # the log below reloads and shows the change
    return response
