"""Forms for the catalog's admin pages: hub search and the Hugging Face token."""

from __future__ import annotations

from django import forms

from catalog.constants import DEFAULT_AUTHOR, KIND_PIPELINE_TAGS, SEARCH_SORTS
from catalog.models import HubToken
from catalog.selectors import SearchQuery


class HubSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200)
    author = forms.CharField(
        required=False, max_length=100, initial=DEFAULT_AUTHOR, help_text="Leave empty to search every author."
    )
    kind = forms.ChoiceField(required=False, choices=[("", "any kind"), *((kind, kind) for kind in KIND_PIPELINE_TAGS)])
    quantization = forms.CharField(required=False, max_length=20, help_text="4-bit, 8-bit, bf16 …")
    architecture = forms.CharField(required=False, max_length=100)
    sort = forms.ChoiceField(required=False, choices=[(sort, sort) for sort in SEARCH_SORTS])
    page = forms.IntegerField(required=False, min_value=1, max_value=1000, widget=forms.HiddenInput)

    def query(self) -> SearchQuery:
        data = self.cleaned_data
        return SearchQuery(
            text=data["q"],
            author=data["author"] if "author" in self.data else DEFAULT_AUTHOR,
            kind=data["kind"],
            quantization=data["quantization"],
            architecture=data["architecture"],
            sort=data["sort"] or "downloads",
            page=data["page"] or 1,
        )


class HubTokenForm(forms.ModelForm):  # type: ignore[type-arg]
    """Takes a new token; the stored one is never rendered back, not even masked."""

    token = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="A Hugging Face access token (hf_…) for gated and private repositories. "
        "It is stored encrypted and never shown again; enter a new one to replace it.",
    )

    class Meta:
        model = HubToken
        fields: list[str] = []

    def clean_token(self) -> str:
        token = str(self.cleaned_data["token"]).strip()
        if not token:
            raise forms.ValidationError("The token is empty.")
        return token
