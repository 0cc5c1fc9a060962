"""Forms for the routing page: a new provider credential, and the "which route" tool."""

from __future__ import annotations

from django import forms

from routing.models import ProviderCredential


class CredentialForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Shown in audit rows as the backend.")
    provider = forms.ChoiceField(choices=ProviderCredential.Provider.choices)
    base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=500,
        help_text="Empty: the provider's public endpoint. OpenAI-shaped ones end in /v1.",
    )
    secret = forms.CharField(
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; never shown again, only its last four characters.",
    )


class ResolveForm(forms.Form):
    model = forms.CharField(max_length=200, label="Model name")
