from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from audit.models import AuditLog
from mlxhub.accounts.models import Role
from mlxhub.accounts.selectors import user_role

USAGE_GROUPS = {"key": "key_prefix", "team": "team__slug", "model": "model_requested"}
USAGE_PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}


def audit_rows_visible_to(*, user: User) -> QuerySet[AuditLog]:
    """Admins see every row; everyone else sees the rows of their own keys."""
    rows = AuditLog.objects.select_related("user", "team").order_by("-created_at")
    return rows if user_role(user=user) == Role.ADMIN else rows.filter(user=user)


def audit_rows_filtered(
    *, user: User, since: datetime | None, model: str | None, status: int | None
) -> QuerySet[AuditLog]:
    rows = audit_rows_visible_to(user=user)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if model:
        rows = rows.filter(model_requested=model)
    if status is not None:
        rows = rows.filter(status_code=status)
    return rows


def usage_summary(*, user: User, group_by: str, period: str) -> list[dict[str, object]]:
    since = timezone.now() - USAGE_PERIODS[period]
    column = USAGE_GROUPS[group_by]
    rows = (
        audit_rows_visible_to(user=user)
        .filter(created_at__gte=since)
        .values(column)
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cached_tokens=Sum("cached_tokens"),
        )
        .order_by(column)
    )
    return [
        {
            group_by: row[column],
            "requests": row["requests"],
            "prompt_tokens": row["prompt_tokens"] or 0,
            "completion_tokens": row["completion_tokens"] or 0,
            "total_tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
            "cached_tokens": row["cached_tokens"] or 0,
        }
        for row in rows
    ]
