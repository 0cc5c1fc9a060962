"""What the data plane keeps beyond a request: stored Responses answers (only with MLXHUB_RESPONSES_STORE=1)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class StoredResponse(models.Model):
    """A /v1/responses answer and the conversation items that led to it, for ``previous_response_id``,
    ``item_reference`` and ``GET /v1/responses/{id}``.

    Unlike the audit log (metadata only), this table holds prompt and answer text: it is written only
    when MLXHUB_RESPONSES_STORE=1, read only by its owner, and purged with MLXHUB_AUDIT_RETENTION_DAYS.
    """

    id = models.CharField(primary_key=True, max_length=200)  # the response's own id (resp_…)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_responses")
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="stored_responses"
    )
    key_prefix = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16)
    previous_response_id = models.CharField(max_length=200, blank=True)
    response = models.JSONField(help_text="The response object, as GET /v1/responses/{id} returns it.")
    input_items = models.JSONField(
        default=list, help_text="Every input item that led to it (earlier turns included), in Responses form."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="stored_response_owner_time")]

    def __str__(self) -> str:
        return f"{self.id} {self.model} {self.status}"
