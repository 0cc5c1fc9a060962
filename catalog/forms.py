"""Forms for the catalog's pages and admin pages: hub search, profiles and the Hugging Face token."""

from __future__ import annotations

from dataclasses import replace

from django import forms

from catalog.constants import DEFAULT_AUTHOR, KIND_PIPELINE_TAGS, SEARCH_SORTS
from catalog.models import HubToken, LocalModel, Profile
from catalog.selectors import SearchQuery
from catalog.serializers import TEMPERATURE_MAX, TOP_P_MAX
from catalog.services.tokens import hub_token_problem


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
        if problem := hub_token_problem(token):
            raise forms.ValidationError(problem)
        return token


# Sizes offered by the discover page's size filter (the repository's stored size).
SIZE_CHOICES = [
    ("", "any size"),
    ("fits", "fits this machine"),
    ("1", "up to 1 GB"),
    ("4", "up to 4 GB"),
    ("8", "up to 8 GB"),
    ("16", "up to 16 GB"),
    ("32", "up to 32 GB"),
]


class DiscoverForm(HubSearchForm):
    """The hub search of the discover page: the catalog's filters plus a size limit."""

    size = forms.ChoiceField(required=False, choices=SIZE_CHOICES)

    def query_with_size(self, *, fits_bytes: int) -> SearchQuery:
        size = self.cleaned_data.get("size") or ""
        limit = fits_bytes if size == "fits" else int(size) * 10**9 if size else None
        return replace(self.query(), max_size_bytes=limit)


class LocalModelChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: LocalModel) -> str:  # type: ignore[override]
        return f"{obj.repo_id} ({obj.kind})"


class ProfileForm(forms.ModelForm):  # type: ignore[type-arg]
    """A profile: the name clients send as ``model``, its local model and its serving defaults."""

    local_model = LocalModelChoiceField(queryset=LocalModel.objects.order_by("repo_id"), label="Model")

    default_temperature = forms.FloatField(
        required=False, min_value=0.0, max_value=TEMPERATURE_MAX, label="Temperature", help_text="0 to 2."
    )
    default_top_p = forms.FloatField(required=False, min_value=0.0, max_value=TOP_P_MAX, label="Top p")

    class Meta:
        model = Profile
        fields = [
            "name", "local_model", "system_prompt", "default_temperature", "default_top_p",
            "default_max_tokens", "context_length", "idle_ttl_seconds", "pinned",
        ]  # fmt: skip
        labels = {
            "default_max_tokens": "Max tokens",
            "idle_ttl_seconds": "Idle TTL (seconds)",
        }
        help_texts = {
            "name": "What clients send as “model”: letters, digits, - and _.",
            "idle_ttl_seconds": "Unload after this long unused; empty: the server's default.",
            "context_length": "Empty: the model's own.",
        }
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 3})}
