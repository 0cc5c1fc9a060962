"""/usage/: requests, tokens, errors, latency and TTFT percentiles over time, by key and by model, budgets
used and left, and a CSV export: of the user's own requests, of the teams they administer, or of everyone.

The report is one pass over the scope's rows in the period (audit.selectors.usage_report); the charts are
SVG drawn on the server. Filters change the URL (hx-push-url), so a view of the usage can be bookmarked.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from audit.charts import bar_chart, line_chart
from audit.export import audit_csv_response
from audit.forms import UsageFilterForm
from audit.models import AuditLog
from audit.selectors import USAGE_PERIODS, UsageReport, usage_report, usage_rows_for, usage_scopes_for
from mlxhub.accounts.limits import limits_usage
from mlxhub.accounts.models import ApiKey, Membership, Role, Team
from mlxhub.pages import actor, query_without_page, render_page, role_required

LABEL_FORMATS = {"day": "%H:%M", "week": "%a %Hh", "month": "%d %b"}


def _filtered_rows(request: HttpRequest, form: UsageFilterForm, scopes: list[str]) -> tuple[QuerySet[AuditLog], str]:
    data = form.cleaned_data if form.is_valid() else {}
    scope = data.get("scope") or scopes[-1]
    rows = usage_rows_for(user=actor(request), scope=scope)
    if data.get("model"):
        rows = rows.filter(model_requested=data["model"])
    if data.get("key"):
        rows = rows.filter(key_prefix__startswith=data["key"])
    return rows, scope


def _charts(report: UsageReport, period: str) -> dict[str, Any]:
    starts = [start for start, _ in report.buckets]
    groups = [group for _, group in report.buckets]
    label_format = LABEL_FORMATS[period]
    return {
        "requests_chart": bar_chart(
            starts,
            [("requests", "series-a", [group.requests for group in groups]),
             ("errors", "series-b", [group.errors for group in groups])],
            label_format=label_format,
        ),
        "tokens_chart": bar_chart(
            starts,
            [("prompt tokens", "series-a", [group.prompt_tokens for group in groups]),
             ("completion tokens", "series-b", [group.completion_tokens for group in groups])],
            label_format=label_format,
        ),
        "latency_chart": line_chart(
            starts,
            [("latency p50", "line-a", [group.latency_p50 for group in groups]),
             ("latency p95", "line-c", [group.latency_p95 for group in groups]),
             ("TTFT p50", "line-b", [group.ttft_p50 for group in groups])],
            label_format=label_format,
        ),
    }  # fmt: skip


def _budgets(request: HttpRequest, scope: str) -> list[dict[str, Any]]:
    """Token budgets in the scope, with what the limiter has counted against them in this period."""
    user = actor(request)
    keys = ApiKey.objects.filter(token_budget__isnull=False, revoked_at__isnull=True).select_related("team")
    teams = Team.objects.filter(token_budget__isnull=False)
    if scope == "mine":
        keys = keys.filter(owner=user)
        teams = teams.filter(memberships__user=user)
    elif scope == "team":
        administered = Membership.objects.filter(user=user, role=Role.ADMIN).values("team_id")
        keys = keys.filter(Q(team_id__in=administered) | Q(owner=user))
        teams = teams.filter(pk__in=administered)
    owners: list[ApiKey | Team] = [*teams.distinct(), *keys[:50]]
    budgets = []
    for owner in owners:
        used = (limits_usage(owner=owner) or {}).get("budget_used", 0)
        budget = owner.token_budget or 0
        budgets.append(
            {
                "kind": "key" if isinstance(owner, ApiKey) else "team",
                "name": f"{owner.name} ({owner.prefix}…)" if isinstance(owner, ApiKey) else owner.name,
                "period": owner.get_budget_period_display().lower(),
                "used": used,
                "budget": budget,
                "left": max(0, budget - used),
                "percent": min(100.0, 100.0 * used / budget) if budget else 0.0,
                "used_words": f"{used:,} used",
                "left_words": f"{max(0, budget - used):,} left of {budget:,}",
            }
        )
    return budgets


@role_required(Role.VIEWER)
def usage_page(request: HttpRequest) -> HttpResponseBase:
    scopes = usage_scopes_for(user=actor(request))
    form = UsageFilterForm(request.GET or None, scopes=scopes)
    rows, scope = _filtered_rows(request, form, scopes)
    period = (form.cleaned_data.get("period") if form.is_valid() else "") or "day"
    if request.GET.get("format") == "csv":
        since = timezone.now() - USAGE_PERIODS[period]
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        return audit_csv_response(rows.filter(created_at__gte=since).order_by("-created_at"),
                                  filename=f"mlxhub-usage-{scope}-{period}-{stamp}.csv")  # fmt: skip
    report = usage_report(rows=rows, period=period)
    context = {
        "form": form,
        "scope": scope,
        "period": period,
        "report": report,
        "budgets": _budgets(request, scope),
        "query": query_without_page(request),
        **_charts(report, period),
    }
    return render_page(request, "audit/usage.html", context, fragment="audit/partials/usage_report.html")
