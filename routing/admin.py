from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from routing.constants import MODEL_NAME_MAX_LENGTH
from routing.models import ProviderCredential, RoutingFallback, RoutingRule
from routing.selectors import routing_rule_resolve
from routing.services import (
    MOVE_REFUSED_MESSAGE,
    RULE_FIELDS,
    FallbackSpec,
    credential_create,
    credential_delete,
    credential_needs_secret,
    credential_test,
    credential_update,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
)


class ProviderCredentialForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False); empty on change keeps the stored secret.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=True,
        help_text="Stored encrypted; never shown again. Leave empty to keep the current secret (not possible when "
        "the provider or the base URL changes).",
    )

    class Meta:
        model = ProviderCredential
        fields = ["name", "provider", "base_url"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None and not cleaned.get("secret"):
            self.add_error("secret", "A new credential needs its secret.")
        elif not cleaned.get("secret") and credential_needs_secret(
            credential=ProviderCredential.objects.get(pk=self.instance.pk),  # the stored row, as it is now
            provider=cleaned.get("provider"),
            base_url=cleaned.get("base_url"),
        ):
            self.add_error("secret", MOVE_REFUSED_MESSAGE)
        return cleaned


def _actor(request: HttpRequest) -> User | None:
    return cast(User, request.user) if request.user.is_authenticated else None


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = ProviderCredentialForm
    list_display = ["name", "provider", "effective_base_url", "masked_secret", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["name"]
    readonly_fields = ["masked_secret"]
    actions = ["test_connection"]

    @admin.display(description="secret")
    def masked_secret(self, obj: ProviderCredential) -> str:
        return obj.secret_mask if obj.pk else "-"

    def save_model(self, request: HttpRequest, obj: ProviderCredential, form: Any, change: bool) -> None:
        secret = form.cleaned_data.get("secret") or None
        fields = {name: form.cleaned_data[name] for name in ("name", "provider", "base_url")}
        if change:
            credential_update(credential=obj, actor=_actor(request), secret=secret, **fields)
        else:
            saved = credential_create(actor=_actor(request), secret=secret or "", **fields)
            obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ProviderCredential) -> None:
        credential_delete(credential=obj, actor=_actor(request))

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderCredential]) -> None:
        for credential in queryset:
            credential_delete(credential=credential, actor=_actor(request))

    @admin.action(description="Test connection")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[ProviderCredential]) -> None:
        for credential in queryset:
            ok, message = credential_test(credential=credential)
            self.message_user(request, message, level=messages.SUCCESS if ok else messages.ERROR)


FALLBACK_FIELDS = ("position", "target_profile", "target_credential", "target_model")


class RoutingFallbackInline(admin.TabularInline):
    model = RoutingFallback
    extra = 1
    fields = list(FALLBACK_FIELDS)


def _fallbacks_from(formsets: list[Any]) -> list[FallbackSpec] | None:
    """The fallback inline's steps in order, or None when the inline is untouched (or absent: list_editable)."""
    changed, steps = False, []
    for formset in formsets:
        if formset.model is not RoutingFallback:
            continue
        # Writes nothing: fills new_objects/changed_objects/deleted_objects, which the admin's history reads.
        formset.save(commit=False)
        changed = changed or formset.has_changed()
        for step_form in formset.forms:
            data = step_form.cleaned_data
            if data and not data.get("DELETE"):
                steps.append(
                    FallbackSpec(
                        position=data["position"],
                        target_profile=data["target_profile"],
                        target_credential=data["target_credential"],
                        target_model=data["target_model"],
                    )
                )
    return steps if changed else None


class ResolveForm(forms.Form):
    model = forms.CharField(max_length=MODEL_NAME_MAX_LENGTH, label="Model name")


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "pattern", "match", "priority", "enabled", "target"]
    list_editable = ["priority", "enabled"]
    list_filter = ["enabled", "match"]
    list_select_related = ["target_profile", "target_credential"]
    search_fields = ["name", "pattern"]
    inlines = [RoutingFallbackInline]
    change_list_template = "routing/admin/rule_changelist.html"

    # Django saves a rule in two steps, save_model then save_related (the change form, and each changed row of
    # the changelist's list_editable form, whose formsets are empty). The rule and its fallbacks are written
    # together in save_related, by one service call: one transaction and one admin-action row per edit.
    def save_model(self, request: HttpRequest, obj: RoutingRule, form: Any, change: bool) -> None:
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: list[Any], change: bool) -> None:
        fallbacks = _fallbacks_from(formsets)
        if change:
            fields = {name: form.cleaned_data[name] for name in form.changed_data if name in RULE_FIELDS}
            if not fields and fallbacks is None:
                return  # saved unchanged: nothing to write, nothing to record
            routing_rule_update(rule=form.instance, actor=_actor(request), fallbacks=fallbacks, **fields)
        else:
            fields = {name: value for name, value in form.cleaned_data.items() if name in RULE_FIELDS}
            saved = routing_rule_create(actor=_actor(request), fallbacks=fallbacks or (), **fields)
            form.instance.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: RoutingRule) -> None:
        routing_rule_delete(rule=obj, actor=_actor(request))

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RoutingRule]) -> None:
        for rule in queryset:
            routing_rule_delete(rule=rule, actor=_actor(request))

    @admin.display(description="target")
    def target(self, obj: RoutingRule) -> str:
        if obj.target_credential_id:
            return f"{obj.target_credential} → {obj.target_model}"
        return f"local: {obj.target_profile}"

    def get_urls(self) -> list[URLPattern]:
        resolve = path("resolve/", self.admin_site.admin_view(self.resolve_view), name="routing_routingrule_resolve")
        return [resolve, *super().get_urls()]

    def resolve_view(self, request: HttpRequest) -> HttpResponse:
        """Which route would this model name take?"""
        form = ResolveForm(request.GET or None)
        route = None
        if form.is_valid():
            route = routing_rule_resolve(model_name=form.cleaned_data["model"]).describe()
        context = {
            **self.admin_site.each_context(request),
            "title": "Which route would this model name take?",
            "form": form,
            "route": route,
            "route_json": json.dumps(route, indent=2) if route else "",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "routing/admin/resolve.html", context)
