from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


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


class Download(models.Model):
    """One job fetching a hub repository into MLXHUB_MODELS_DIR; the pages and the admin read this row."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"

    # A second request for the same repository and revision joins a job in one of these.
    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.PAUSED)

    repo_id = models.CharField(max_length=200)
    revision = models.CharField(max_length=100, default="main")
    commit_sha = models.CharField(max_length=64, blank=True, help_text="The commit the revision pointed at.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    files = models.JSONField(default=list, blank=True, help_text="path, size and sha256 of every file.")
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    speed_bps = models.FloatField(default=0.0, help_text="Bytes per second, recent.")
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="downloads"
    )
    local_model = models.ForeignKey(
        LocalModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="downloads"
    )
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # De-duplication holds under concurrent requests too: the database refuses a second active job.
            models.UniqueConstraint(
                fields=["repo_id", "revision"],
                condition=Q(status__in=["queued", "running", "paused"]),
                name="one_active_download_per_revision",
            )
        ]

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes_done / self.bytes_total if self.bytes_total else 0.0


class HubToken(models.Model):
    """The Hugging Face token for gated and private repositories: one row, encrypted, never shown again."""

    SINGLETON_ID = 1

    encrypted_token = models.TextField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Hugging Face token"

    def __str__(self) -> str:
        return "Hugging Face token (set)"
