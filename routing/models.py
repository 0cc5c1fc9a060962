"""Provider credentials (secret encrypted at rest) and routing rules."""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

# Regex rules are matched with the `regex` package, not `re`: `re` has no time limit, so a rule such as
# `gpt-(\w+-?)+` and a crafted model name backtrack for hours on the event loop. `regex` takes a per-call
# `timeout`, speaks the same syntax as `re` (VERSION0), so rules already saved keep their meaning, and is
# already pinned (transformers depends on it). google-re2 would guarantee linear time, but it is a new
# compiled dependency and refuses backreferences and lookarounds that saved rules may use.
import regex
from django.core.exceptions import ValidationError
from django.db import models

from catalog.models import Profile
from routing.constants import REGEX_MATCH_TIMEOUT_SECONDS, SECRET_MASK


def validate_base_url(value: str) -> None:
    # Not URLField: internal hosts (http://gpu-box:8000/v1) have no top-level domain.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL.")


class ProviderCredential(models.Model):
    """An upstream provider account. The secret is a Fernet token; only its last four characters are kept clear."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible (vLLM, Ollama, LM Studio, MLX Hub)"

    DEFAULT_BASE_URLS: dict[str, str] = {
        Provider.OPENAI: "https://api.openai.com/v1",
        Provider.ANTHROPIC: "https://api.anthropic.com",
    }

    name = models.SlugField(max_length=100, unique=True, help_text="Shown in audit rows as the backend.")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    base_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_base_url],
        help_text="Empty: the provider's public endpoint. OpenAI-shaped ones end in /v1.",
    )
    encrypted_secret = models.TextField(editable=False)
    secret_last_four = models.CharField(max_length=4, editable=False, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_mask(self) -> str:
        return f"{SECRET_MASK}{self.secret_last_four}"

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or self.DEFAULT_BASE_URLS.get(self.provider, "")).rstrip("/")

    @property
    def speaks_anthropic(self) -> bool:
        return self.provider == self.Provider.ANTHROPIC

    def clean(self) -> None:
        if self.provider == self.Provider.OPENAI_COMPATIBLE and not self.base_url:
            raise ValidationError({"base_url": "An OpenAI-compatible provider needs its base URL."})


class RoutingRule(models.Model):
    """Requests whose model name matches go to the target, then the fallbacks in order."""

    class Match(models.TextChoices):
        EXACT = "exact", "Exact"
        GLOB = "glob", "Glob (* and ?)"
        REGEX = "regex", "Regular expression (full match)"

    name = models.CharField(max_length=100, unique=True)
    pattern = models.CharField(max_length=300)
    match = models.CharField(max_length=10, choices=Match.choices, default=Match.EXACT)
    priority = models.IntegerField(default=100, help_text="Lower runs first.")
    enabled = models.BooleanField(default=True)
    target_profile = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_rules"
    )
    target_credential = models.ForeignKey(
        ProviderCredential, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_rules"
    )
    target_model = models.CharField(max_length=200, blank=True, help_text="The provider's model name.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        validate_target(self.target_profile_id, self.target_credential_id, self.target_model)
        if self.match == self.Match.REGEX:
            try:
                regex.compile(self.pattern, regex.VERSION0)
            except regex.error as exc:
                raise ValidationError({"pattern": f"Not a valid regular expression: {exc}"}) from exc

    def matches(self, model_name: str) -> bool:
        """Raises TimeoutError when a regex takes longer than REGEX_MATCH_TIMEOUT_SECONDS to decide."""
        if self.match == self.Match.EXACT:
            return model_name == self.pattern
        if self.match == self.Match.GLOB:
            return fnmatch.fnmatchcase(model_name, self.pattern)
        try:
            # concurrent=True lets the engine's and the audit writer's threads run while a slow pattern works.
            found = regex.fullmatch(
                self.pattern, model_name, regex.VERSION0, timeout=REGEX_MATCH_TIMEOUT_SECONDS, concurrent=True
            )
        except regex.error:
            return False  # written around clean() (a migration, raw SQL): such a rule matches nothing
        return found is not None


class RoutingFallback(models.Model):
    """One step of a rule's ordered fallback list."""

    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="fallbacks")
    position = models.PositiveIntegerField(default=0)
    target_profile = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_fallbacks"
    )
    target_credential = models.ForeignKey(
        ProviderCredential, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_fallbacks"
    )
    target_model = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["rule", "position", "id"]

    def __str__(self) -> str:
        return f"{self.rule} #{self.position}"

    def clean(self) -> None:
        validate_target(self.target_profile_id, self.target_credential_id, self.target_model)


def validate_target(profile_id: int | None, credential_id: int | None, model: str) -> None:
    if (profile_id is None) == (credential_id is None):
        raise ValidationError("Choose either a local profile or a provider credential as the target.")
    if credential_id is not None and not model:
        raise ValidationError({"target_model": "A provider target needs the provider's model name."})
