from __future__ import annotations

from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from inference.models import StoredResponse


@admin.register(StoredResponse)
class StoredResponseAdmin(ReadOnlyAdmin):
    """Read-only: rows are written by the data plane and removed by their owner's DELETE or the purge."""

    list_display = ["id", "created_at", "user", "team", "key_prefix", "model", "status", "previous_response_id"]
    list_filter = ["created_at", "status", "team"]
    list_select_related = ["user", "team"]
    search_fields = ["=id", "=key_prefix", "=previous_response_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
