"""Forms for the keys and team pages; each one's cleaned data goes to one service."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django import forms
from django.utils import timezone

from mlxhub.accounts.models import BudgetPeriod, KeyScope, Role, Team


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where the key is used, e.g. “laptop” or “ci”.")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), help_text="Its requests count against this team.")
    allowed_models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model.",
    )
    scope = forms.ChoiceField(
        choices=KeyScope.choices,
        initial=KeyScope.INFERENCE,
        required=False,
        widget=forms.RadioSelect,
        help_text="Inference for applications; control for scripts that also manage the hub through /api.",
    )
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: never expires. It stops working at the start of that day (UTC).",
    )

    def __init__(self, *args: Any, teams: Any, models: list[str], preferred: Team | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ModelChoiceField)
        team_field.queryset = teams
        team_field.initial = preferred.pk if preferred is not None else None
        models_field = self.fields["allowed_models"]
        assert isinstance(models_field, forms.MultipleChoiceField)
        models_field.choices = [(name, name) for name in models]

    def clean_scope(self) -> str:
        return self.cleaned_data.get("scope") or KeyScope.INFERENCE  # none chosen: the narrower one

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        moment = datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
        if moment <= timezone.now():
            raise forms.ValidationError("Choose a day after today.")
        return moment


class KeyLimitsForm(forms.Form):
    """Limits and budget: the admins' to set; empty means unlimited."""

    rpm = forms.IntegerField(required=False, min_value=1, label="Requests per minute")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tokens per minute")
    max_concurrent = forms.IntegerField(required=False, min_value=1, label="Requests at once")
    token_budget = forms.IntegerField(required=False, min_value=1, label="Token budget")
    budget_period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTH, label="per")


class KeyEditForm(forms.Form):
    """What may change on a key (never its secret): a member renames their own; an admin also changes its models,
    scope and expiry (what restricts a key is not lifted by the key's owner)."""

    name = forms.CharField(max_length=100)
    allowed_models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every model."
    )
    scope = forms.ChoiceField(choices=KeyScope.choices, widget=forms.RadioSelect)
    expires_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Empty: never expires."
    )

    def __init__(self, *args: Any, models: list[str], admin: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not admin:
            for name in ("allowed_models", "scope", "expires_on"):
                del self.fields[name]
            return
        models_field = self.fields["allowed_models"]
        assert isinstance(models_field, forms.MultipleChoiceField)
        models_field.choices = [(name, name) for name in models]

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return None if day is None else datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())

    def changes(self) -> dict[str, Any]:
        """The service's fields for what this form holds."""
        renamed = {"expires_on": "expires_at"}
        return {renamed.get(name, name): value for name, value in self.cleaned_data.items()}


class UserAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Empty: one is generated and shown once.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
