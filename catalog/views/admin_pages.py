"""The catalog's pages inside the admin: hub search, a hub model, and a download's live progress.

Progress is polled (htmx, every second) from the Download row: with the embedded in-memory channel
layer a worker's events never reach the web process, and the row is the truth in every mode anyway.
One view returns the page or, for htmx, just the fragment.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.forms import HubSearchForm
from catalog.hub import HubError
from catalog.models import Download, LocalModel
from catalog.selectors import hub_model_detail, hub_search
from catalog.services import (
    DownloadRefused,
    DownloadStateError,
    download_cancel,
    download_pause,
    download_resume,
    download_start,
)
from mlxhub.pages import is_htmx

DOWNLOAD_ACTIONS = {"pause": download_pause, "resume": download_resume, "cancel": download_cancel}


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(f"catalog.{permission}"):
        raise PermissionDenied


def _context(site: AdminSite, request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {**site.each_context(request), "opts": Download._meta, **extra}


def hub_search_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    _require(request, "view_download")
    form = HubSearchForm(request.GET or None)
    page, error = None, ""
    if form.is_bound and form.is_valid():
        try:
            page = hub_search(form.query())
        except HubError as exc:
            error = exc.message
    params = request.GET.copy()
    params.pop("page", None)
    context = _context(site, request, title="Search the hub", form=form, page=page, error=error,
                       params=params.urlencode())  # fmt: skip
    return TemplateResponse(request, "catalog/admin/hub_search.html", context)


def hub_model_view(request: HttpRequest, site: AdminSite, repo_id: str) -> HttpResponse:
    _require(request, "view_download")
    try:
        detail = hub_model_detail(repo_id=repo_id, revision=request.GET.get("revision") or None)
    except HubError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        detail, error = None, exc.message
    else:
        error = ""
    context = _context(
        site,
        request,
        title=repo_id,
        repo_id=repo_id,
        detail=detail,
        error=error,
        local_models=LocalModel.objects.filter(repo_id=repo_id),
        active=Download.objects.filter(repo_id=repo_id, status__in=Download.ACTIVE_STATUSES).first(),
    )
    return TemplateResponse(request, "catalog/admin/hub_model.html", context)


@require_POST
def download_start_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    _require(request, "add_download")
    repo_id = request.POST.get("repo_id", "")
    try:
        started = download_start(
            repo_id=repo_id, revision=request.POST.get("revision") or "main", requested_by=cast(User, request.user)
        )
    except (HubError, DownloadRefused) as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("admin:catalog_download_hub_model", args=[repo_id]))
    if not started.created:
        messages.info(request, f"{repo_id} is already being downloaded: this is that job.")
    return HttpResponseRedirect(reverse("admin:catalog_download_progress", args=[started.download.pk]))


def download_progress_view(request: HttpRequest, site: AdminSite, pk: int) -> HttpResponse:
    _require(request, "view_download")
    download = get_object_or_404(Download.objects.select_related("local_model", "requested_by"), pk=pk)
    return _progress_response(request, site, download)


@require_POST
def download_action_view(request: HttpRequest, site: AdminSite, pk: int, action: str) -> HttpResponse:
    _require(request, "change_download")
    if action not in DOWNLOAD_ACTIONS:
        raise Http404("Unknown action.")
    download = get_object_or_404(Download, pk=pk)
    refused = ""
    try:
        download = DOWNLOAD_ACTIONS[action](download=download, actor=cast(User, request.user))
    except DownloadStateError as exc:
        refused = str(exc)
    if not is_htmx(request):
        if refused:
            messages.error(request, refused)
        return HttpResponseRedirect(reverse("admin:catalog_download_progress", args=[download.pk]))
    return _progress_response(request, site, download, refused=refused)


def _progress_response(request: HttpRequest, site: AdminSite, download: Download, refused: str = "") -> HttpResponse:
    context = {
        "download": download,
        "can_change": request.user.has_perm("catalog.change_download"),
        "refused": refused,
    }
    if is_htmx(request):
        return TemplateResponse(request, "catalog/partials/download_progress.html", context)
    context = _context(site, request, title=f"Download {download.repo_id}", **context)
    return TemplateResponse(request, "catalog/admin/download_progress.html", context)
