from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from audit.models import AdminAction, AuditLog
from mlxhub.accounts.models import Membership, Role, Team
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


def admin_actions_for_team(*, team: Team) -> QuerySet[AdminAction]:
    """What the team's people did, and what was done to the team, its memberships and its people."""
    memberships = Membership.objects.filter(team=team)
    user_ids = [str(pk) for pk in memberships.values_list("user_id", flat=True)]
    membership_ids = [str(pk) for pk in memberships.values_list("pk", flat=True)]
    about_team = (
        Q(actor_id__in=[int(pk) for pk in user_ids])
        | Q(object_type="accounts.Team", object_id=str(team.pk))
        | Q(object_type="accounts.Membership", object_id__in=membership_ids)
        | Q(object_type="auth.User", object_id__in=user_ids)
    )
    return AdminAction.objects.filter(about_team).select_related("actor").order_by("-created_at", "-pk")


def audit_rows_for_team_of(*, user: User) -> QuerySet[AuditLog]:
    """The requests of the user's teams (and their own); superusers see every row."""
    rows = AuditLog.objects.select_related("user", "team").order_by("-created_at")
    if user.is_superuser:
        return rows
    teams = Membership.objects.filter(user=user).values("team_id")
    return rows.filter(Q(team_id__in=teams) | Q(user=user))


def throughput_recent(*, seconds: int = 60) -> dict[str, float]:
    """Requests and completion tokens per second over the last ``seconds``, from the audit rows."""
    since = timezone.now() - timedelta(seconds=seconds)
    totals = AuditLog.objects.filter(created_at__gte=since).aggregate(
        requests=Count("id"), tokens=Sum("completion_tokens")
    )
    return {
        "requests": int(totals["requests"] or 0),
        "tokens_per_second": (totals["tokens"] or 0) / seconds,
        "seconds": seconds,
    }


# The usage page: one pass over the scope's rows in the period (at most USAGE_MAX_ROWS, the latest).
USAGE_MAX_ROWS = 50_000
# Bucket width per period: 24 hours of an hour each, a week of 6 hours, a month of days.
USAGE_BUCKETS = {"day": timedelta(hours=1), "week": timedelta(hours=6), "month": timedelta(days=1)}


def percentile(values: list[int], share: float) -> int | None:
    """Nearest-rank percentile of already sorted ``values`` (None when there are none)."""
    if not values:
        return None
    rank = max(1, min(len(values), math.ceil(share * len(values))))
    return values[rank - 1]


@dataclass
class UsageGroup:
    """Requests, tokens, errors and latencies (sorted) of one key, one model, one time bucket or of everything."""

    name: str
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[int] = field(default_factory=list, repr=False)
    ttfts: list[int] = field(default_factory=list, repr=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def latency(self, share: float) -> int | None:
        return percentile(self.latencies, share)

    def ttft(self, share: float) -> int | None:
        return percentile(self.ttfts, share)

    @property
    def latency_p50(self) -> int | None:
        return self.latency(0.5)

    @property
    def latency_p95(self) -> int | None:
        return self.latency(0.95)

    @property
    def latency_p99(self) -> int | None:
        return self.latency(0.99)

    @property
    def ttft_p50(self) -> int | None:
        return self.ttft(0.5)

    @property
    def ttft_p95(self) -> int | None:
        return self.ttft(0.95)


@dataclass
class UsageReport:
    since: datetime
    bucket: timedelta
    total: UsageGroup
    buckets: list[tuple[datetime, UsageGroup]]
    by_key: list[UsageGroup]
    by_model: list[UsageGroup]
    truncated: bool


def usage_report(*, rows: QuerySet[AuditLog], period: str, now: datetime | None = None) -> UsageReport:
    """Totals, a time series and the split by key and by model of ``rows`` over the period.

    One pass over the rows sorts each into its bucket, key and model (lists of the row's figures); each group
    is then summed from its lists at once, which keeps the page fast over tens of thousands of rows.
    """
    now = now or timezone.now()
    width = USAGE_BUCKETS[period]
    since = now - USAGE_PERIODS[period]
    # Buckets start on a whole bucket (UTC), so the series does not shift with every refresh.
    first = datetime.fromtimestamp(since.timestamp() // width.total_seconds() * width.total_seconds(), tz=UTC)
    count = int((now - first) / width) + 1
    # The database names each row's bucket (no datetime made per row in Python): the first edge after it.
    edges = [When(created_at__lt=first + (index + 1) * width, then=Value(index)) for index in range(count - 1)]
    bucket = Case(*edges, default=Value(count - 1), output_field=IntegerField())
    values = list(
        rows.filter(created_at__gte=since)
        .order_by("-created_at")
        .annotate(bucket=bucket)
        .values_list(
            "bucket", "status_code", "cancelled", "latency_ms", "ttft_ms",
            "prompt_tokens", "completion_tokens", "key_prefix", "model_requested",
        )[: USAGE_MAX_ROWS + 1]
    )  # fmt: skip
    truncated = len(values) > USAGE_MAX_ROWS
    del values[USAGE_MAX_ROWS:]
    in_bucket: list[list[Figures]] = [[] for _ in range(count)]
    by_key: dict[str, list[Figures]] = {}
    by_model: dict[str, list[Figures]] = {}
    everything: list[Figures] = []
    for index, status, cancelled, latency, ttft, prompt, completion, key, model in values:
        figures = (status, cancelled, latency, ttft, prompt, completion)
        everything.append(figures)
        in_bucket[index].append(figures)
        # No key: a signed-in user's request, from the playground.
        by_key.setdefault(key or "(playground)", []).append(figures)
        by_model.setdefault(model or "(none)", []).append(figures)
    return UsageReport(
        since=since,
        bucket=width,
        total=_summed("all", everything),
        buckets=[(first + index * width, _summed("", figures)) for index, figures in enumerate(in_bucket)],
        by_key=sorted((_summed(name, figures) for name, figures in by_key.items()), key=lambda g: -g.requests),
        by_model=sorted((_summed(name, figures) for name, figures in by_model.items()), key=lambda g: -g.requests),
        truncated=truncated,
    )


ERROR_STATUS = 400  # and above: counted as an error
# One row's (status_code, cancelled, latency_ms, ttft_ms, prompt_tokens, completion_tokens).
Figures = tuple[int, bool, int, "int | None", int, int]


def _summed(name: str, rows: list[Figures]) -> UsageGroup:
    group = UsageGroup(name=name)
    if not rows:
        return group
    statuses, cancelled, latencies, ttfts, prompts, completions = zip(*rows, strict=True)
    group.requests = len(rows)
    group.errors = sum(map(ERROR_STATUS.__le__, statuses))  # map and sum stay in C over many rows
    group.cancelled = sum(cancelled)
    group.prompt_tokens = sum(prompts)
    group.completion_tokens = sum(completions)
    group.latencies = sorted(latencies)
    group.ttfts = sorted([ttft for ttft in ttfts if ttft is not None])
    return group


def usage_rows_for(*, user: User, scope: str) -> QuerySet[AuditLog]:
    """The rows a scope covers: ``mine`` (the user's own), ``team`` (the teams they administer), ``all``."""
    rows = AuditLog.objects.all()
    if scope == "all":
        return rows
    if scope == "team":
        teams = Membership.objects.filter(user=user, role=Role.ADMIN).values("team_id")
        return rows.filter(team_id__in=teams)
    return rows.filter(user=user)


def usage_scopes_for(*, user: User) -> list[str]:
    """What the user may see on /usage/: their own; a team admin their teams; a superuser everyone."""
    scopes = ["mine"]
    if user.is_superuser or Membership.objects.filter(user=user, role=Role.ADMIN).exists():
        scopes.append("team")
    if user.is_superuser:
        scopes.append("all")
    return scopes
