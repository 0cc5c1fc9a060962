"""/usage/ (scopes, figures, CSV), the overview, /routing/, and what the list pages cost: query counts that
do not grow with the rows, and 10,000 audit rows rendered in under 200 ms of server time."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AdminAction, AuditLog
from audit.selectors import percentile
from catalog.services import profile_upsert
from mlxhub.accounts.models import Role, Team
from mlxhub.accounts.services import api_key_create, membership_set
from routing.models import ProviderCredential, RoutingRule
from routing.services import credential_create
from tests.mlxhub.factories import make_user
from tests.pages.conftest import HTMX, make_download, signed_in

SERVER_TIME_BUDGET = 0.200


def audit_rows(user: Any, count: int, *, team: Team | None = None, key: str = "mlxh-abcdefg", **fields: Any) -> None:
    now = timezone.now()
    AuditLog.objects.bulk_create(
        AuditLog(
            created_at=now - timedelta(seconds=5 + index * 60 * 60 * 23 / max(1, count)),
            request_id=f"req_{user.pk}_{index}_{key}",
            user=user,
            team=team,
            key_prefix=key,
            endpoint="chat.completions",
            model_requested=fields.get("model", "demo"),
            backend="local",
            status_code=fields.get("status", 500 if index % 10 == 0 else 200),
            latency_ms=100 + index % 900,
            ttft_ms=10 + index % 90,
            prompt_tokens=10,
            completion_tokens=20,
        )
        for index in range(count)
    )


def requests_shown(browser: Client, query: str = "") -> int:
    page = browser.get(f"/usage/?{query}", **HTMX).content.decode()
    start = page.index('id="usage-requests">') + len('id="usage-requests">')
    return int(page[start : page.index("<", start)].replace(",", ""))


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50, 95, 99)
    assert percentile([], 0.5) is None and percentile([7], 0.99) == 7


def test_a_member_sees_their_own_usage_a_team_admin_the_teams_and_a_superuser_everyones(
    alice: Any, bob: Any, charlie: Any, root: Any, team: Team
):
    other = Team.objects.create(name="Other", slug="other")
    audit_rows(bob, 30, team=team)
    audit_rows(charlie, 20, team=team)
    audit_rows(make_user("outsider", team=other, role=Role.MEMBER), 7, team=other)

    assert requests_shown(signed_in(bob)) == 30
    assert requests_shown(signed_in(bob), "scope=all") == 30  # a scope the role may not see falls back
    assert requests_shown(signed_in(alice)) == 50
    assert requests_shown(signed_in(alice), "scope=mine") == 0
    assert requests_shown(signed_in(root)) == 57


def test_the_usage_report_has_errors_latency_and_ttft_percentiles_by_key_and_by_model(as_bob: Client, bob: Any):
    audit_rows(bob, 100, key="mlxh-laptop0", model="demo")
    audit_rows(bob, 10, key="mlxh-ci00000", model="other")

    page = as_bob.get("/usage/?period=day").content.decode()

    assert "110" in page and "11 cancelled" not in page
    assert "mlxh-laptop0" in page and "mlxh-ci00000" in page and ">other<" in page
    assert page.count("<svg") == 3 and "<rect" in page and "<polyline" in page
    assert requests_shown(as_bob, "model=other") == 10 and requests_shown(as_bob, "key=mlxh-lap") == 100


def test_filters_push_the_url_and_the_fragment_varies_on_htmx(as_bob: Client):
    page = as_bob.get("/usage/").content.decode()
    assert 'hx-push-url="true"' in page

    response = as_bob.get("/usage/?period=week", **HTMX)

    assert "HX-Request" in response["Vary"] and "<html" not in response.content.decode()


def test_the_csv_export_holds_the_rows_of_the_scope_and_period(as_bob: Client, bob: Any, charlie: Any, team: Team):
    audit_rows(bob, 12, team=team)
    audit_rows(charlie, 5, team=team)

    response = as_bob.get("/usage/?period=month&format=csv")

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 12 and {row["user"] for row in rows} == {"bob"} and rows[0]["team"] == "research"


def test_budgets_show_what_is_used_and_left(as_bob: Client, bob: Any, team: Team):
    api_key_create(owner=bob, name="capped", team=team, limits={"token_budget": 5000, "budget_period": "day"})

    page = as_bob.get("/usage/").content.decode()

    assert "capped" in page and "5,000 left of 5,000" in page


def test_the_overview_shows_memory_queue_tokens_downloads_and_the_teams_last_requests(
    as_bob: Client, bob: Any, charlie: Any, team: Team
):
    audit_rows(charlie, 3, team=team, model="team-model")
    audit_rows(make_user("stranger"), 3, model="secret-model")
    make_download("mlx-community/arriving")

    page = as_bob.get("/").content.decode()

    assert "Memory" in page and 'id="stat-queue"' in page and 'id="stat-tps"' in page
    assert "mlx-community/arriving" in page and 'hx-trigger="every 2s"' in page  # a download runs: busy
    assert "team-model" in page and "secret-model" not in page
    assert 'hx-get="/overview/health/"' in page


def test_the_overview_polls_slowly_when_nothing_runs(as_bob: Client):
    assert 'hx-trigger="every 10s"' in as_bob.get("/", **HTMX).content.decode()


def test_health_answers_the_readyz_checks_in_words(as_bob: Client, settings: Any):
    settings.MLXHUB_ENGINE_PRELOAD = False  # this process hosts no engine

    page = as_bob.get("/overview/health/", **HTMX).content.decode()

    assert "Database" in page and "Broker" in page and "Engine" in page


# /routing/
def test_the_routing_page_masks_secrets_and_resolves_names(as_alice: Client, alice: Any, tiny_profile: Any):
    credential = credential_create(name="openai", provider="openai", secret="sk-very-secret-1234", actor=alice)
    RoutingRule.objects.create(name="cloud", pattern="gpt-*", match="glob", target_credential=credential,
                               target_model="gpt-4o-mini")  # fmt: skip

    page = as_alice.get("/routing/").content.decode()
    assert "••••1234" in page and "sk-very-secret" not in page and "gpt-*" in page
    answer = as_alice.get("/routing/resolve/?model=gpt-x", **HTMX).content.decode()
    assert "rule <strong>“cloud”</strong>" in answer and "gpt-4o-mini" in answer
    answer = as_alice.get("/routing/resolve/?model=tiny-chat", **HTMX).content.decode()
    assert "no rule matches" in answer and "local profile <code>tiny-chat</code>" in answer


def test_an_admin_adds_a_credential_that_is_stored_encrypted_and_audited(as_alice: Client):
    fields = {
        "name": "box",
        "provider": "openai-compatible",
        "base_url": "http://gpu-box:8000/v1",
        "secret": "tok-12345678",
    }
    response = as_alice.post("/routing/credentials/", fields)

    assert response.status_code == 302
    credential = ProviderCredential.objects.get(name="box")
    assert "tok-12345678" not in credential.encrypted_secret and credential.secret_last_four == "5678"
    assert AdminAction.objects.filter(object_type="routing.ProviderCredential", action="created").exists()


def test_a_credential_without_its_base_url_comes_back_with_the_reason(as_alice: Client):
    response = as_alice.post("/routing/credentials/", {"name": "box", "provider": "openai-compatible", "secret": "x"})

    assert response.status_code == 422 and "needs its base URL" in response.content.decode()


# What the list pages cost.
def grow(kind: str, count: int, *, user: Any, team: Team, offset: int) -> None:
    for index in range(offset, offset + count):
        if kind == "keys":
            api_key_create(owner=user, name=f"key-{index}", team=team)
        elif kind == "downloads":
            make_download(f"mlx-community/model-{index}", status="done")
        elif kind == "members":
            membership_set(team=team, user=make_user(f"member-{index}"), role=Role.MEMBER, actor=None)
        elif kind == "audit":
            audit_rows(user, 1, team=team, key=f"mlxh-k{index:06d}", model=f"model-{index}")
        elif kind == "profiles":
            profile_upsert(name=f"profile-{index}", local_model=_local_model(index))
        elif kind == "rules":
            RoutingRule.objects.create(name=f"rule-{index}", pattern=f"m-{index}", target_profile=_profile(index))


def _local_model(index: int) -> Any:
    from catalog.models import LocalModel

    return LocalModel.objects.create(repo_id=f"local/m-{index}", path=f"/nowhere/m-{index}", size_bytes=1000)


def _profile(index: int) -> Any:
    return profile_upsert(name=f"target-{index}", local_model=_local_model(10_000 + index))


LIST_PAGES = [
    ("keys", "/keys/", 14),
    ("downloads", "/downloads/", 10),
    ("members", "/team/", 12),
    ("audit", "/team/log/?team=research", 10),
    ("audit", "/usage/", 14),
    ("audit", "/", 12),
    ("profiles", "/models/", 10),
    ("profiles", "/playground/", 8),
    ("rules", "/routing/", 10),
]


@pytest.mark.parametrize(("kind", "path", "most"), LIST_PAGES)
def test_a_list_pages_query_count_does_not_grow_with_its_rows(
    kind: str, path: str, most: int, root: Any, team: Team, django_assert_max_num_queries: Callable[..., Any]
):
    browser = signed_in(root)
    grow(kind, 2, user=root, team=team, offset=0)
    with CaptureQueriesContext(connection) as few:
        assert browser.get(path).status_code == 200
    grow(kind, 25, user=root, team=team, offset=2)

    with django_assert_max_num_queries(most):
        assert browser.get(path).status_code == 200
    with CaptureQueriesContext(connection) as many:
        browser.get(path)

    assert len(many) == len(few), [query["sql"] for query in many.captured_queries]


def best_of(runs: int, call: Callable[[], Any]) -> float:
    """The fastest of a few timed calls: the machine is shared, and the slowest run measures the neighbours."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def test_ten_thousand_audit_rows_render_in_under_200_ms_of_server_time(root: Any, team: Team):
    audit_rows(root, 10_000, team=team)
    AdminAction.objects.bulk_create(
        AdminAction(actor=root, action="changed", object_type="accounts.ApiKey", object_id=str(index),
                    object_repr=f"key {index}", changes={"rpm": index})
        for index in range(10_000)
    )  # fmt: skip
    browser = signed_in(root)
    assert requests_shown(browser) == 10_000  # warm: templates compiled, the session read once

    usage = best_of(5, lambda: browser.get("/usage/"))
    log = best_of(5, lambda: browser.get("/team/log/?team=research", **HTMX))
    overview = best_of(5, lambda: browser.get("/"))

    assert usage < SERVER_TIME_BUDGET, f"/usage/ took {usage * 1000:.0f} ms"
    assert log < SERVER_TIME_BUDGET, f"/team/log/ took {log * 1000:.0f} ms"
    assert overview < SERVER_TIME_BUDGET, f"/ took {overview * 1000:.0f} ms"
    print(f"10,000 rows: /usage/ {usage * 1000:.0f} ms, /team/log/ {log * 1000:.0f} ms, / {overview * 1000:.0f} ms")


def test_each_row_counts_in_the_time_bucket_it_falls_in(root: Any):
    from datetime import UTC, datetime

    from audit.selectors import usage_report

    now = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)  # the day's series: hourly buckets from 2026-11-30 12:00
    times = {
        "just after the period began": datetime(2026, 11, 30, 12, 31, tzinfo=UTC),
        "on the second bucket's edge": datetime(2026, 11, 30, 13, 0, tzinfo=UTC),
        "a second before the third": datetime(2026, 11, 30, 13, 59, 59, tzinfo=UTC),
        "ten minutes ago": datetime(2026, 12, 1, 12, 20, tzinfo=UTC),
        "before the period": datetime(2026, 11, 30, 12, 29, tzinfo=UTC),
    }
    AuditLog.objects.bulk_create(
        AuditLog(created_at=when, request_id=f"req_bucket_{index}", user=root, endpoint="chat.completions",
                 status_code=200, latency_ms=100, prompt_tokens=1, completion_tokens=1)
        for index, when in enumerate(times.values())
    )  # fmt: skip
    report = usage_report(rows=AuditLog.objects.filter(request_id__startswith="req_bucket_"), period="day", now=now)
    counts = {start: group.requests for start, group in report.buckets if group.requests}
    assert counts == {
        datetime(2026, 11, 30, 12, 0, tzinfo=UTC): 1,
        datetime(2026, 11, 30, 13, 0, tzinfo=UTC): 2,
        datetime(2026, 12, 1, 12, 0, tzinfo=UTC): 1,
    }
    assert report.total.requests == 4 and len(report.buckets) == 25
