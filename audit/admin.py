from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.functional import cached_property

from audit.export import audit_csv_response
from audit.models import AdminAction, AuditLog


class FixedCountPaginator(Paginator):
    """COUNT(*) on a large audit table is slow; the changelist does not need the exact number."""

    ESTIMATE = 100_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.ESTIMATE


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "request_id",
        "user",
        "key_prefix",
        "team",
        "endpoint",
        "model_requested",
        "backend",
        "status_code",
        "latency_ms",
        "ttft_ms",
        "prompt_tokens",
        "completion_tokens",
        "streamed",
        "cancelled",
    ]
    list_filter = ["created_at", "status_code", "backend", "endpoint", "model_requested", "team", "user"]
    list_select_related = ["user", "team"]
    search_fields = ["=request_id", "=key_prefix"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    paginator = FixedCountPaginator
    actions = ["export_csv"]

    @admin.action(description="Export selected rows as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditLog]) -> StreamingHttpResponse:
        return audit_csv_response(queryset, filename="mlxhub-audit.csv")


@admin.register(AdminAction)
class AdminActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type", "created_at"]
    list_select_related = ["actor"]
    search_fields = ["object_repr", "actor__username"]
    show_full_result_count = False
