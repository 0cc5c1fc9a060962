"""/downloads/: every download job with a live progress bar, and the actions on one.

Each active job's row polls its own fragment every second (the Celery worker writes the Download row; with
the embedded in-memory channel layer its events never reach the web process, so the row is what is read).
A finished, failed or cancelled job's row comes back without the trigger, so nothing polls when nothing runs.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.constants import DOWNLOAD_NOT_YOURS
from catalog.hub import HubError
from catalog.selectors import download_changeable_by, downloads_visible
from catalog.services import (
    DownloadRefused,
    DownloadStateError,
    download_cancel,
    download_pause,
    download_resume,
    download_start,
)
from mlxhub.accounts.models import Role
from mlxhub.pages import actor, is_htmx, paginate, query_without_page, render_page, role_required

DOWNLOAD_ACTIONS = {"pause": download_pause, "resume": download_resume, "cancel": download_cancel}


@role_required(Role.VIEWER)
def downloads_page(request: HttpRequest) -> HttpResponse:
    page = paginate(request, downloads_visible())
    context = {"page": page, "downloads": page.object_list, "query": query_without_page(request)}
    return render_page(request, "catalog/downloads.html", context, fragment="catalog/partials/downloads_table.html")


@role_required(Role.VIEWER)
def download_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One job: its table row for htmx's polling, else a page of its own."""
    download = get_object_or_404(downloads_visible(), pk=pk)
    return render_page(request, "catalog/download.html", {"download": download},
                       fragment="catalog/partials/download_row.html")  # fmt: skip


@require_POST
@role_required(Role.MEMBER)
def download_start_page(request: HttpRequest) -> HttpResponse:
    repo_id = request.POST.get("repo_id", "").strip()
    try:
        started = download_start(
            repo_id=repo_id, revision=request.POST.get("revision") or "main", requested_by=actor(request)
        )
    except (HubError, DownloadRefused) as exc:
        messages.error(request, f"{repo_id} was not downloaded: {exc.message}")
        target = reverse("hub-model", args=[repo_id]) if "/" in repo_id else reverse("discover")
        return HttpResponseRedirect(target)
    if started.created:
        messages.success(request, f"Downloading {repo_id}: the bar below moves as the files arrive.")
    else:
        messages.info(request, f"{repo_id} is already being downloaded: this is that job.")
    return HttpResponseRedirect(reverse("downloads") + f"#download-{started.download.pk}")


@require_POST
@role_required(Role.MEMBER)
def download_act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in DOWNLOAD_ACTIONS:
        raise Http404("Unknown action.")
    download = get_object_or_404(downloads_visible(), pk=pk)
    if not download_changeable_by(user=request.user, download=download):
        if is_htmx(request):
            return HttpResponse(DOWNLOAD_NOT_YOURS, status=403, content_type="text/plain; charset=utf-8")
        raise PermissionDenied(DOWNLOAD_NOT_YOURS)
    try:
        download = DOWNLOAD_ACTIONS[action](download=download, actor=actor(request))
    except DownloadStateError as exc:
        if is_htmx(request):
            return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("downloads"))
    if is_htmx(request):
        return TemplateResponse(request, "catalog/partials/download_row.html", {"download": download})
    return HttpResponseRedirect(reverse("downloads") + f"#download-{download.pk}")
