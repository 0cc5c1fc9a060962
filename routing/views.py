"""/routing/ (admins only): provider credentials (masked), routing rules, and "which route would this name take".

Rules, with their ordered fallbacks, are edited in the admin (the better tool for inline rows); this page lists
them, adds credentials through the audited service and answers the resolve tool as a fragment.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlxhub.accounts.models import Role
from mlxhub.pages import actor, is_htmx, render_page, role_required
from routing.forms import CredentialForm, ResolveForm
from routing.models import ProviderCredential, RoutingRule
from routing.selectors import routing_rule_resolve
from routing.services import credential_create, credential_test

FORM_INVALID = 422


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "credentials": ProviderCredential.objects.order_by("name"),
        "rules": RoutingRule.objects.select_related("target_profile", "target_credential")
        .prefetch_related("fallbacks__target_profile", "fallbacks__target_credential")
        .order_by("priority", "id"),
        "credential_form": extra.pop("credential_form", None) or CredentialForm(),
        "resolve_form": ResolveForm(request.GET or None),
        **extra,
    }


@role_required(Role.ADMIN)
def routing_page(request: HttpRequest) -> HttpResponse:
    return render_page(request, "routing/routing.html", _context(request))


@role_required(Role.ADMIN)
def routing_resolve(request: HttpRequest) -> HttpResponse:
    """The route a model name would take: the page with the answer, or for htmx the answer alone."""
    form = ResolveForm(request.GET)
    route = routing_rule_resolve(model_name=form.cleaned_data["model"]).describe() if form.is_valid() else None
    context = _context(request, route=route, resolve_form=form)
    return render_page(request, "routing/routing.html", context, fragment="routing/partials/route.html")


@require_POST
@role_required(Role.ADMIN)
def credential_add(request: HttpRequest) -> HttpResponse:
    form = CredentialForm(request.POST)
    if form.is_valid():
        try:
            credential = credential_create(actor=actor(request), **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Added the credential “{credential.name}” ({credential.secret_mask}).")
            return HttpResponseRedirect(reverse("routing"))
    return TemplateResponse(
        request, "routing/routing.html", _context(request, credential_form=form), status=FORM_INVALID
    )


@require_POST
@role_required(Role.ADMIN)
def credential_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Test the stored secret against the provider; the answer never holds it."""
    credential = get_object_or_404(ProviderCredential, pk=pk)
    ok, message = credential_test(credential=credential)
    if is_htmx(request):
        return TemplateResponse(request, "routing/partials/credential_test.html", {"ok": ok, "message": message})
    (messages.success if ok else messages.error)(request, message)
    return HttpResponseRedirect(reverse("routing"))
