"""The catalog in the admin: local models, profiles (with their models' load state), downloads (with hub search
and live progress), the hub token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from catalog import views
from catalog.forms import HubTokenForm
from catalog.models import Download, HubToken, LocalModel, Profile
from catalog.services import (
    DownloadStateError,
    LocalModelInUse,
    download_cancel,
    download_pause,
    download_resume,
    hub_token_clear,
    hub_token_set,
    local_model_delete,
    local_models_scan,
    profile_delete,
    profile_save,
)
from catalog.services.pool import pool_models, profile_load, profile_unload
from inference.engine.stats import ModelStats
from inference.engine.types import EngineError


def _actor(request: HttpRequest) -> User | None:
    return cast(User, request.user) if request.user.is_authenticated else None


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    list_display = ["repo_id", "revision", "kind", "architecture", "quantization", "size", "context_length",
                    "profile_names", "created_at"]  # fmt: skip
    list_filter = ["kind", "quantization"]
    search_fields = ["repo_id", "path"]
    readonly_fields = ["created_at"]
    actions = ["delete_with_files", "delete_with_files_forced"]
    change_list_template = "admin/catalog/localmodel/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[LocalModel]:
        return super().get_queryset(request).prefetch_related("profiles")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The stock bulk delete would drop rows and leave the files; these actions go through local_model_delete.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="size", ordering="size_bytes")
    def size(self, local_model: LocalModel) -> str:
        return filesizeformat(local_model.size_bytes)

    @admin.display(description="profiles")
    def profile_names(self, local_model: LocalModel) -> str:
        names = [profile.name for profile in local_model.profiles.all()]
        if names:
            return ", ".join(names)
        url = reverse("admin:catalog_profile_add") + f"?local_model={local_model.pk}"
        return format_html('<a href="{}">make a profile</a>', url)

    def _delete(self, request: HttpRequest, queryset: QuerySet[LocalModel], *, force: bool) -> None:
        freed = 0
        for local_model in queryset:
            try:
                deleted = local_model_delete(local_model=local_model, force=force, actor=_actor(request))
            except LocalModelInUse as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            freed += deleted.bytes_freed
            kept = "" if deleted.files_removed else " (its folder is outside MLX Hub's folders and was kept)"
            self.message_user(request, f"Deleted {local_model.repo_id}{kept}.", messages.SUCCESS)
        self.message_user(request, f"Freed {filesizeformat(freed)} ({freed:,} bytes).", messages.INFO)

    @admin.action(description="Delete the selected models and their files", permissions=["delete"])
    def delete_with_files(self, request: HttpRequest, queryset: QuerySet[LocalModel]) -> None:
        self._delete(request, queryset, force=False)

    @admin.action(description="Delete the selected models, their files and their profiles", permissions=["delete"])
    def delete_with_files_forced(self, request: HttpRequest, queryset: QuerySet[LocalModel]) -> None:
        self._delete(request, queryset, force=True)

    def delete_model(self, request: HttpRequest, obj: LocalModel) -> None:
        local_model_delete(local_model=obj, force=True, actor=_actor(request))

    def get_urls(self) -> list[URLPattern]:
        scan = path("scan/", self.admin_site.admin_view(require_POST(self.scan_view)), name="catalog_localmodel_scan")
        return [scan, *super().get_urls()]

    def scan_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:catalog_localmodel_changelist"))
        result = local_models_scan()
        self.message_user(request, f"Found {len(result.registered)} model folder(s) on disk.", messages.SUCCESS)
        for reason in result.skipped:
            self.message_user(request, f"Skipped: {reason}", messages.WARNING)
        for missing in result.missing:
            self.message_user(request, f"{missing.repo_id}: its folder {missing.path} is gone.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:catalog_localmodel_changelist"))


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "local_model", "pinned", "enabled", "default_max_tokens", "created_at"]
    list_filter = ["enabled", "pinned"]
    list_select_related = ["local_model"]
    search_fields = ["name", "local_model__repo_id"]
    autocomplete_fields = ["local_model"]
    actions = ["load_models", "unload_idle_models", "force_unload_models"]

    def save_model(self, request: HttpRequest, obj: Profile, form: Any, change: bool) -> None:
        profile_save(profile=obj, actor=_actor(request), changed=list(form.changed_data))

    def delete_model(self, request: HttpRequest, obj: Profile) -> None:
        profile_delete(profile=obj, actor=_actor(request))

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        # The pool's stats are read once per page (and never start the engine), not once per row.
        pool = pool_models()

        @admin.display(description="state")
        def state(profile: Profile) -> str:
            key = profile.local_model.path
            return _pool_state(pool.get(key) or ModelStats(key=key))

        columns: list[Any] = list(self.list_display)
        columns.insert(columns.index("local_model") + 1, state)
        return columns

    @admin.action(description="Load selected models", permissions=["change"])
    def load_models(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        loaded = []
        for profile in queryset.select_related("local_model"):
            try:
                stats = profile_load(profile=profile, actor=_actor(request))
            except EngineError as exc:
                self.message_user(request, f"{profile.name} was not loaded: {exc}", messages.ERROR)
                continue
            loaded.append(f"{profile.name} ({filesizeformat(stats.weights_bytes)})")
        if loaded:
            self.message_user(request, f"Loaded {', '.join(loaded)}.", messages.SUCCESS)

    @admin.action(description="Unload selected models (idle only)", permissions=["change"])
    def unload_idle_models(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._unload(request, queryset, force=False)

    @admin.action(description="Force unload selected models (cancels their requests)", permissions=["change"])
    def force_unload_models(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        self._unload(request, queryset, force=True)

    def _unload(self, request: HttpRequest, queryset: QuerySet[Profile], *, force: bool) -> None:
        unloaded = []
        for profile in queryset.select_related("local_model"):
            try:
                profile_unload(profile=profile, actor=_actor(request), force=force)
            except EngineError as exc:
                level = messages.WARNING if exc.code == "model_busy" else messages.ERROR
                self.message_user(request, f"{profile.name} was not unloaded: {exc}", level)
                continue
            unloaded.append(profile.name)
        if unloaded:
            self.message_user(request, f"Unloaded {', '.join(unloaded)}.", messages.SUCCESS)


def _pool_state(stats: ModelStats) -> str:
    if stats.state != "loaded":
        return stats.state
    busy = f", {stats.active_requests} running" if stats.active_requests else ""
    # Which kernel path it runs on: "optimized, float32 via mkl" or "stock, bfloat16".
    kernel = ", ".join(part for part in (stats.kernel_path, stats.weights_dtype) if part)
    if stats.blas:
        kernel += f" via {stats.blas}"
    kernel = f", {kernel}" if kernel else ""
    return f"loaded ({filesizeformat(stats.weights_bytes)}{kernel}{busy})"


DownloadAction = Callable[..., Download]


@admin.register(Download)
class DownloadAdmin(admin.ModelAdmin):
    list_display = ["repo_id", "revision", "status", "progress", "speed", "eta", "requested_by", "created_at"]
    list_filter = ["status"]
    search_fields = ["repo_id"]
    list_select_related = ["requested_by", "local_model"]
    actions = ["pause", "resume", "cancel", "retry"]
    change_list_template = "admin/catalog/download/change_list.html"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # downloads start from the hub search, through download_start

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the row is the worker's; people act on it with the actions

    @admin.display(description="progress")
    def progress(self, download: Download) -> str:
        url = reverse("admin:catalog_download_progress", args=[download.pk])
        return format_html(
            '<a href="{}">{}%</a> of {}', url, f"{download.percent:.0f}", filesizeformat(download.bytes_total)
        )

    @admin.display(description="speed")
    def speed(self, download: Download) -> str:
        return f"{filesizeformat(download.speed_bps)}/s" if download.status == Download.Status.RUNNING else "—"

    @admin.display(description="ETA")
    def eta(self, download: Download) -> str:
        return f"{download.eta_seconds} s" if download.eta_seconds is not None else "—"

    def _act(self, request: HttpRequest, queryset: QuerySet[Download], action: DownloadAction, verb: str) -> None:
        done = 0
        for download in queryset:
            try:
                action(download=download, actor=_actor(request))
                done += 1
            except DownloadStateError as exc:
                self.message_user(request, f"{download.repo_id}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{verb} {done} download(s).", messages.SUCCESS)

    @admin.action(description="Pause the selected downloads")
    def pause(self, request: HttpRequest, queryset: QuerySet[Download]) -> None:
        self._act(request, queryset, download_pause, "Paused")

    @admin.action(description="Resume the selected downloads")
    def resume(self, request: HttpRequest, queryset: QuerySet[Download]) -> None:
        self._act(request, queryset, download_resume, "Resumed")

    @admin.action(description="Cancel the selected downloads (removes partial files)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Download]) -> None:
        self._act(request, queryset, download_cancel, "Cancelled")

    @admin.action(description="Retry the selected failed downloads")
    def retry(self, request: HttpRequest, queryset: QuerySet[Download]) -> None:
        self._act(request, queryset.filter(status=Download.Status.FAILED), download_resume, "Retried")

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site

        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return site.admin_view(lambda request, *args, **kwargs: view(request, site, *args, **kwargs))

        return [
            path("hub/", wrap(views.hub_search_view), name="catalog_download_hub"),
            path("hub/start/", wrap(views.download_start_view), name="catalog_download_start"),
            path("hub/<path:repo_id>/", wrap(views.hub_model_view), name="catalog_download_hub_model"),
            path("<int:pk>/progress/", wrap(views.download_progress_view), name="catalog_download_progress"),
            path("<int:pk>/progress/<str:action>/", wrap(views.download_action_view), name="catalog_download_act"),
            *super().get_urls(),
        ]


@admin.register(HubToken)
class HubTokenAdmin(admin.ModelAdmin):
    """One row; the form takes a token and the page never shows it back."""

    form = HubTokenForm
    list_display = ["__str__", "updated_by", "updated_at"]
    fields = ["token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not HubToken.objects.exists()

    def save_model(self, request: HttpRequest, obj: HubToken, form: Any, change: bool) -> None:
        saved = hub_token_set(token=form.cleaned_data["token"], actor=_actor(request))
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: HubToken) -> None:
        hub_token_clear(actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[HubToken]) -> None:
        hub_token_clear(actor=_actor(request))
