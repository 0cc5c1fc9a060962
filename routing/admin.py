from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from routing.constants import MODEL_NAME_MAX_LENGTH
from routing.models import ProviderCredential, RoutingFallback, RoutingRule
from routing.selectors import routing_rule_resolve
from routing.services import credential_create, credential_test, credential_update


class ProviderCredentialForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False); empty on change keeps the stored secret.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=True,
        help_text="Stored encrypted; never shown again. Leave empty to keep the current secret.",
    )

    class Meta:
        model = ProviderCredential
        fields = ["name", "provider", "base_url"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None and not cleaned.get("secret"):
            self.add_error("secret", "A new credential needs its secret.")
        return cleaned


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
            credential_update(credential=obj, actor=request.user, secret=secret, **fields)  # type: ignore[arg-type]
        else:
            saved = credential_create(actor=request.user, secret=secret or "", **fields)  # type: ignore[arg-type]
            obj.pk = saved.pk

    @admin.action(description="Test connection")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[ProviderCredential]) -> None:
        for credential in queryset:
            ok, message = credential_test(credential=credential)
            self.message_user(request, message, level=messages.SUCCESS if ok else messages.ERROR)


class RoutingFallbackInline(admin.TabularInline):
    model = RoutingFallback
    extra = 1
    fields = ["position", "target_profile", "target_credential", "target_model"]


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
