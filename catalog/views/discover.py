"""/discover/: search the hub with the catalog's filters, and a hub model's page with its Download button.

The page renders at once; the results (a call to the hub, cached briefly) load as a fragment, and every
change of a filter fetches the fragment again and pushes the URL, so a filtered search can be bookmarked.
Without JavaScript the form's ``inline`` field (inside <noscript>) asks for the results in the page itself.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from huggingface_hub.utils import HFValidationError, validate_repo_id

from catalog.constants import MEMORY_OVERHEAD_FACTOR
from catalog.forms import DiscoverForm
from catalog.hub import HubError
from catalog.model_facts import fits_memory, memory_budget_bytes
from catalog.models import Download, LocalModel
from catalog.selectors import hub_model_detail, hub_search
from mlxhub.accounts.models import Role
from mlxhub.pages import is_htmx, query_without_page, render_page, role_required


def _budget() -> int:
    return memory_budget_bytes(settings.MLXHUB_MEMORY_BUDGET_BYTES)


def _results_context(request: HttpRequest, form: DiscoverForm) -> dict[str, Any]:
    budget = _budget()
    page, error = None, ""
    if form.is_valid():
        try:
            page = hub_search(form.query_with_size(fits_bytes=int(budget / MEMORY_OVERHEAD_FACTOR)))
        except HubError as exc:
            error = exc.message
        except ValueError as exc:
            error = str(exc)
    else:
        problems = (f"{name}: {' '.join(str(error) for error in errors)}" for name, errors in form.errors.items())
        error = "Check the filters: " + "; ".join(problems)
    results = []
    if page is not None:
        on_disk = set(LocalModel.objects.filter(repo_id__in=[row["repo_id"] for row in page.results])
                      .values_list("repo_id", flat=True))  # fmt: skip
        results = [
            {**row, "fits": fits_memory(row["size_bytes"] or 0, budget), "on_disk": row["repo_id"] in on_disk}
            for row in page.results
        ]
    return {"page": page, "results": results, "error": error, "query": query_without_page(request)}


@role_required(Role.VIEWER)
def discover_page(request: HttpRequest) -> HttpResponse:
    form = DiscoverForm(request.GET or None)
    if is_htmx(request) or "inline" in request.GET:
        context = {"form": form, "inline": True, **_results_context(request, DiscoverForm(request.GET))}
    else:
        context = {"form": form, "inline": False, "query": request.GET.urlencode()}
    return render_page(request, "catalog/discover.html", context, fragment="catalog/partials/hub_results.html")


@role_required(Role.VIEWER)
def hub_model_page(request: HttpRequest, repo_id: str) -> HttpResponse:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise Http404(f"{repo_id!r} is not a hub repository id.") from exc
    revision = request.GET.get("revision") or None
    try:
        detail = hub_model_detail(repo_id=repo_id, revision=revision)
    except HubError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        detail, error = None, exc.message
    else:
        error = ""
    context = {
        "repo_id": repo_id,
        "detail": detail,
        "error": error,
        "needed_bytes": int(detail["weights_bytes"] * MEMORY_OVERHEAD_FACTOR) if detail else 0,
        "local_models": LocalModel.objects.filter(repo_id=repo_id),
        "active": Download.objects.filter(repo_id=repo_id, status__in=Download.ACTIVE_STATUSES).first(),
    }
    return render_page(request, "catalog/hub_model.html", context)
