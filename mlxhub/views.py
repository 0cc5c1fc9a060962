"""/: the overview. What is loaded and the memory it holds, the queue and tokens/s now, downloads in progress,
the last requests of the user's team, and health.

The page renders the skeleton with the cheap figures; the live panel is a fragment that refreshes in place
(every 2 s while the engine is busy or a download runs, every 10 s when idle), and health loads after the
page because the broker check may take a moment.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from audit.selectors import audit_rows_for_team_of, throughput_recent
from catalog.models import Download
from catalog.selectors import pool_memory, profiles_with_state
from catalog.services.pool import pool_models
from mlxhub.accounts.models import Role
from mlxhub.health import readyz
from mlxhub.pages import actor, render_page, role_required

RECENT_REQUESTS = 8
BUSY_POLL = "2s"
IDLE_POLL = "10s"


def _live_context() -> dict[str, Any]:
    pool = pool_models()
    rows = profiles_with_state(pool=pool)
    loaded = [row for row in rows if row.state in {"loaded", "loading"}]
    downloads = list(Download.objects.filter(status__in=Download.ACTIVE_STATUSES).order_by("created_at")[:5])
    in_flight = sum(row.stats.active_requests for row in loaded)
    waiting = sum(row.stats.waiting for row in loaded)
    busy = bool(in_flight or downloads or any(row.state == "loading" for row in rows))
    return {
        "loaded": loaded,
        "profile_count": len(rows),
        "memory": pool_memory(pool=pool),
        "in_flight": in_flight,
        "waiting": waiting,
        "throughput": throughput_recent(),
        "downloads": downloads,
        "poll_every": BUSY_POLL if busy else IDLE_POLL,
    }


@role_required(Role.VIEWER)
def overview(request: HttpRequest) -> HttpResponse:
    """The page, or for htmx the live panel that refreshes itself."""
    context = {**_live_context(), "recent": audit_rows_for_team_of(user=actor(request))[:RECENT_REQUESTS]}
    return render_page(request, "mlxhub/overview.html", context, fragment="mlxhub/partials/overview_live.html")


@role_required(Role.VIEWER)
def overview_health(request: HttpRequest) -> HttpResponse:
    """The same checks as /readyz (database, broker, engine), in words."""
    answer = async_to_sync(readyz)(request)
    body = json.loads(answer.content)
    checks = [{"name": name, "ok": value == "ok", "detail": value} for name, value in body.get("checks", {}).items()]
    context = {"ready": answer.status_code == 200, "checks": checks, "kernels": body.get("kernels")}
    return TemplateResponse(request, "mlxhub/partials/health.html", context)
