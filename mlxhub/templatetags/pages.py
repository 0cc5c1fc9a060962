"""Filters the pages share: durations and percentages in words people read at a glance."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def duration(seconds: float | int | None) -> str:
    """42 → "42 s", 125 → "2 min 5 s", 7300 → "2 h 1 min"; None → "—"."""
    if seconds is None:
        return "—"
    total = round(float(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


@register.filter
def percent_of(value: float | int | None, total: float | int | None) -> float:
    """``value`` as a percentage of ``total`` (0 when the total is unknown), capped at 100."""
    if not total or value is None:
        return 0.0
    return min(100.0, max(0.0, 100.0 * float(value) / float(total)))


@register.filter
def milliseconds(value: float | int | None) -> str:
    """1234 → "1.23 s", 87 → "87 ms"; None → "—"."""
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{int(value)} ms"


@register.filter
def thousands(value: int | float | None) -> str:
    """12345 → "12,345"."""
    return "—" if value is None else f"{value:,.0f}"


@register.filter
def ago(moment: datetime | None) -> str:
    """ "just now", "3 minutes ago", "2 days ago"."""
    if moment is None:
        return "never"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 45:
        return "just now" if seconds > -45 else f"in {timesince(timezone.now(), moment)}"
    return f"{timesince(moment)} ago"


# What an admin-action row's object type means to a person.
OBJECT_KINDS = {
    "accounts.ApiKey": "API key",
    "accounts.Membership": "membership",
    "accounts.Team": "team",
    "auth.User": "user",
    "catalog.Profile": "profile",
    "catalog.Download": "download",
    "catalog.LocalModel": "local model",
    "catalog.HubToken": "hub token",
    "routing.ProviderCredential": "credential",
    "routing.RoutingRule": "rule",
}


@register.filter
def object_kind(label: str) -> str:
    return OBJECT_KINDS.get(label, label)
