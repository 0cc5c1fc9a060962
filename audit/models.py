from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    """One row per data-plane request: metadata only, never prompt or completion text."""

    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=128, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_logs"
    )
    key_prefix = models.CharField(max_length=16, blank=True, db_index=True)
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_logs"
    )
    endpoint = models.CharField(max_length=64)
    model_requested = models.CharField(max_length=200, blank=True)
    model_served = models.CharField(max_length=200, blank=True)
    backend = models.CharField(max_length=64, blank=True)
    status_code = models.PositiveSmallIntegerField(db_index=True)
    error_type = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    streamed = models.BooleanField(default=False)
    cancelled = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_requested", "created_at"], name="audit_model_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.endpoint} {self.status_code}"


class AdminAction(models.Model):
    """Who changed what in the control plane; written by the service, in its transaction."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        CHANGED = "changed", "Changed"
        REVOKED = "revoked", "Revoked"
        DELETED = "deleted", "Deleted"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="admin_actions"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True, help_text="Field names and new values; never a secret.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type} {self.object_repr}"
