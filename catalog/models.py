from __future__ import annotations

from django.db import models


class ModelKind(models.TextChoices):
    TEXT = "text", "Text"
    VISION = "vision", "Vision"
    EMBEDDING = "embedding", "Embedding"


class LocalModel(models.Model):
    """A model folder on disk in the Hugging Face layout."""

    repo_id = models.CharField(max_length=200, help_text="Hub repository, or local/<name>.")
    revision = models.CharField(max_length=100, default="main")
    path = models.CharField(max_length=1000, unique=True)
    kind = models.CharField(max_length=20, choices=ModelKind.choices, default=ModelKind.TEXT)
    architecture = models.CharField(max_length=100, blank=True)
    quantization = models.CharField(max_length=50, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["repo_id"]

    def __str__(self) -> str:
        return self.repo_id


class Profile(models.Model):
    """The name clients send as `model`: a local model plus serving defaults."""

    name = models.SlugField(max_length=100, unique=True, allow_unicode=False)
    local_model = models.ForeignKey(LocalModel, on_delete=models.PROTECT, related_name="profiles")
    system_prompt = models.TextField(blank=True)
    default_temperature = models.FloatField(null=True, blank=True)
    default_top_p = models.FloatField(null=True, blank=True)
    default_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the model's own context length when set."
    )
    pinned = models.BooleanField(default=False, help_text="Load at start and never evict.")
    idle_ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def effective_context_length(self) -> int | None:
        return self.context_length or self.local_model.context_length
