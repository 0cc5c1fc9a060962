"""The usage page's filters."""

from __future__ import annotations

from django import forms

from audit.selectors import USAGE_PERIODS

SCOPE_LABELS = {"mine": "My requests", "team": "My teams", "all": "Everyone"}


class UsageFilterForm(forms.Form):
    scope = forms.ChoiceField(required=False)
    period = forms.ChoiceField(
        required=False, choices=[(name, f"last {name}") for name in USAGE_PERIODS], initial="day"
    )
    model = forms.CharField(required=False, max_length=200)
    key = forms.CharField(required=False, max_length=16, label="Key prefix")

    def __init__(self, *args: object, scopes: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        scope = self.fields["scope"]
        assert isinstance(scope, forms.ChoiceField)
        scope.choices = [(name, SCOPE_LABELS[name]) for name in scopes]
        scope.initial = scopes[-1]  # the widest view the role allows
