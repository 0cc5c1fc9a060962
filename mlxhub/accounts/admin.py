from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from mlxhub.accounts.models import ApiKey, KeyScope, Membership, Team
from mlxhub.accounts.services import (
    LIMIT_FIELDS,
    api_key_create,
    api_key_revoke,
    api_key_update,
    membership_remove,
    membership_set,
    team_create,
    team_update,
    user_delete,
    user_password_changed,
    user_save,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "rpm", "tpm", "max_concurrent", "token_budget", "budget_period", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        # Through the services, so every change leaves an AdminAction row.
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        actor = request.user if request.user.is_authenticated else None
        if change:
            team_update(team=Team.objects.get(pk=obj.pk), actor=actor, **fields)  # type: ignore[arg-type]
            obj.refresh_from_db()
            return
        data = {name: form.cleaned_data.get(name) for name in LIMIT_FIELDS}
        created = team_create(name=obj.name, slug=obj.slug, actor=actor, limits=data)  # type: ignore[arg-type]
        obj.pk = created.pk

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        actor = request.user if request.user.is_authenticated else None
        for inline_form in formset.forms:
            if not inline_form.has_changed() and not inline_form.cleaned_data.get("DELETE"):
                continue
            membership = inline_form.instance
            if inline_form.cleaned_data.get("DELETE"):
                if membership.pk:
                    membership_remove(membership=membership, actor=actor)  # type: ignore[arg-type]
                continue
            if inline_form.cleaned_data.get("user") is None:
                continue
            if membership.pk and membership.user_id != inline_form.initial.get("user"):
                # The row now names another user: the old membership ends, it is not handed over.
                membership_remove(membership=Membership.objects.get(pk=membership.pk), actor=actor)  # type: ignore[arg-type]
            membership_set(
                team=form.instance,
                user=inline_form.cleaned_data["user"],
                role=inline_form.cleaned_data["role"],
                actor=actor,  # type: ignore[arg-type]
            )
        # Django's change message reads what formset.save() would have set.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


class ApiKeyAddForm(forms.ModelForm):
    allowed_models = forms.CharField(
        required=False,
        help_text="Comma-separated model names; leave empty to allow every model.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "owner", "team", "scope", "allowed_models", "expires_at", *LIMIT_FIELDS]

    def clean_allowed_models(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_models") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "team", "scope", "status", "last_used_at", "created_at"]
    list_filter = ["scope", "team", "revoked_at", "created_at"]
    list_select_related = ["owner", "team"]
    search_fields = ["name", "prefix", "owner__username"]
    autocomplete_fields = ["owner", "team"]
    actions = ["revoke_keys"]
    readonly_fields = ["prefix", "revoked_at", "last_used_at", "created_at"]

    @admin.display(description="Status")
    def status(self, api_key: ApiKey) -> str:
        if api_key.is_revoked:
            return "revoked"
        if api_key.is_expired():
            return "expired"
        return "active"

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["name", "owner", "team", "scope", "allowed_models", "expires_at", *LIMIT_FIELDS]
        return [
            "name",
            "prefix",
            "owner",
            "team",
            "scope",
            "allowed_models",
            "expires_at",
            *LIMIT_FIELDS,
            *self.readonly_fields[1:],
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else [*self.readonly_fields, "owner"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk}

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "owner" and not request.user.is_superuser:
            # A key acts as its owner: a staff user must not make one that acts as a superuser.
            kwargs["queryset"] = User.objects.filter(is_superuser=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        actor = request.user if request.user.is_authenticated else None
        if change:
            fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
            api_key_update(api_key=ApiKey.objects.get(pk=obj.pk), actor=actor, **fields)  # type: ignore[arg-type]
            obj.refresh_from_db()
            return
        created = api_key_create(
            owner=form.cleaned_data["owner"],
            name=form.cleaned_data["name"],
            team=form.cleaned_data.get("team"),
            allowed_models=form.cleaned_data.get("allowed_models") or [],
            expires_at=form.cleaned_data.get("expires_at"),
            scope=form.cleaned_data.get("scope") or KeyScope.INFERENCE,
            limits={name: form.cleaned_data.get(name) for name in LIMIT_FIELDS if name in form.cleaned_data},
            actor=actor,  # type: ignore[arg-type]
        )
        obj.pk = created.api_key.pk
        obj.prefix = created.api_key.prefix
        # Kept on the instance only for the one page that shows it.
        obj._created_secret = created.secret  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(obj, "_created_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "secret": secret,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor=request.user)  # type: ignore[arg-type]
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with every save and delete going through the audited services."""

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        actor = request.user if request.user.is_authenticated else None
        user_save(user=obj, actor=actor, changed=list(form.changed_data))  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        actor = request.user if request.user.is_authenticated else None
        user_delete(user=obj, actor=actor)  # type: ignore[arg-type]

    @transaction.atomic
    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        # Django's view saves the form itself; the audit row joins its transaction through log_change.
        return super().user_change_password(request, id, form_url)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if request.resolver_match and request.resolver_match.url_name == "auth_user_password_change":
            actor = request.user if request.user.is_authenticated else None
            user_password_changed(user=obj, actor=actor)  # type: ignore[arg-type]
        return super().log_change(request, obj, message)
