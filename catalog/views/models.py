"""/models/: the local models and profiles, their state in the engine's pool, and the profile form.

The pool is read once per answer (``pool_models()``, which never starts the engine). Load, unload and pin wait
for the engine (a load takes seconds); their errors come back in words, as the 409 or 503 the engine gave.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog.forms import ProfileForm
from catalog.models import Profile
from catalog.selectors import local_model_fits, local_models_listed, pool_memory, profiles_with_state
from catalog.services import profile_delete, profile_save
from catalog.services.pool import pool_models, profile_load, profile_unload
from inference.engine.types import EngineError
from mlxhub.accounts.models import Role
from mlxhub.pages import actor, is_htmx, render_page, role_required

FORM_INVALID = 422


def _profiles_context(request: HttpRequest) -> dict[str, Any]:
    pool = pool_models()
    rows = profiles_with_state(pool=pool)
    return {"profiles": rows, "memory": pool_memory(pool=pool), "polling": any(row.busy for row in rows)}


def _page_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    local_models = [
        {"model": local_model, "fits": local_model_fits(local_model=local_model)}
        for local_model in local_models_listed()
    ]
    form = extra.pop("form", None)
    if form is None:
        initial = {"local_model": request.GET.get("local_model")} if request.GET.get("local_model") else {}
        form = ProfileForm(initial=initial)
    return {**_profiles_context(request), "local_models": local_models, "form": form, **extra}


@role_required(Role.VIEWER)
def models_page(request: HttpRequest) -> HttpResponse:
    """The page; for htmx the profiles table alone (it polls itself while a model loads or serves)."""
    if is_htmx(request):
        return render_page(request, "catalog/models.html", _profiles_context(request),
                           fragment="catalog/partials/profiles_table.html")  # fmt: skip
    return render_page(request, "catalog/models.html", _page_context(request))


@require_POST
@role_required(Role.MEMBER)
def profile_create(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST)
    if not form.is_valid():
        return TemplateResponse(request, "catalog/models.html", _page_context(request, form=form), status=FORM_INVALID)
    profile = profile_save(profile=form.instance, actor=actor(request), changed=list(form.changed_data))
    messages.success(request, f'Profile “{profile.name}” is ready: clients send model="{profile.name}".')
    return HttpResponseRedirect(reverse("models") + f"#profile-{profile.name}")


@role_required(Role.VIEWER)
def profile_detail(request: HttpRequest, name: str) -> HttpResponse:
    """The profile's settings: a form for members, the same fields read-only for viewers."""
    profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
    context = {"profile": profile, "form": ProfileForm(instance=profile)}
    return render_page(request, "catalog/profile.html", context)


@require_POST
@role_required(Role.MEMBER)
def profile_update(request: HttpRequest, name: str) -> HttpResponse:
    profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
    form = ProfileForm(request.POST, instance=profile)
    if not form.is_valid():
        context = {"profile": profile, "form": form}
        return TemplateResponse(request, "catalog/profile.html", context, status=FORM_INVALID)
    profile = profile_save(profile=form.instance, actor=actor(request), changed=list(form.changed_data))
    messages.success(request, f"Saved the profile “{profile.name}”.")
    return HttpResponseRedirect(reverse("models") + f"#profile-{profile.name}")


@require_POST
@role_required(Role.MEMBER)
def profile_remove(request: HttpRequest, name: str) -> HttpResponse:
    profile = get_object_or_404(Profile, name=name)
    try:
        profile_delete(profile=profile, actor=actor(request))
    except ProtectedError:
        return _refused(request, f"“{name}” is a target of routing rules: change those rules first.", status=409)
    messages.success(request, f"Deleted the profile “{name}”.")
    return HttpResponseRedirect(reverse("models"))


def _refused(request: HttpRequest, reason: str, *, status: int) -> HttpResponse:
    if is_htmx(request):
        return HttpResponse(reason, status=status, content_type="text/plain; charset=utf-8")
    messages.error(request, reason)
    return HttpResponseRedirect(reverse("models"))


def _after_action(request: HttpRequest, done: str) -> HttpResponse:
    if is_htmx(request):
        return TemplateResponse(request, "catalog/partials/profiles_table.html", _profiles_context(request))
    messages.success(request, done)
    return HttpResponseRedirect(reverse("models"))


def _engine_refusal(request: HttpRequest, profile: Profile, exc: EngineError) -> HttpResponse:
    reason = str(exc)
    if exc.code == "insufficient_memory":
        reason = f"Not enough memory to load “{profile.name}”: {exc} Unload a model or pin fewer."
    elif exc.code == "model_busy":
        reason = f"“{profile.name}” is answering requests: {exc}"
    return _refused(request, reason, status=exc.status)


@require_POST
@role_required(Role.MEMBER)
def profile_load_view(request: HttpRequest, name: str) -> HttpResponse:
    profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
    try:
        stats = profile_load(profile=profile, actor=actor(request))
    except EngineError as exc:
        return _engine_refusal(request, profile, exc)
    return _after_action(request, f"Loaded “{name}” ({filesizeformat(stats.memory_bytes)}).")


@require_POST
@role_required(Role.MEMBER)
def profile_unload_view(request: HttpRequest, name: str) -> HttpResponse:
    profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
    force = request.POST.get("force") == "1"
    try:
        profile_unload(profile=profile, actor=actor(request), force=force)
    except EngineError as exc:
        return _engine_refusal(request, profile, exc)
    return _after_action(request, f"Unloaded “{name}”.")


@require_POST
@role_required(Role.MEMBER)
def profile_pin_view(request: HttpRequest, name: str) -> HttpResponse:
    """Pin (``pinned=1``: load it now and never evict it) or unpin a profile."""
    profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
    pinned = request.POST.get("pinned") == "1"
    if profile.pinned != pinned:
        profile.pinned = pinned
        profile_save(profile=profile, actor=actor(request), changed=["pinned"])
    # The engine learns of the change when it (re)loads the spec: pinning loads it, unpinning updates a loaded one.
    stats = pool_models().get(profile.local_model.path)
    loaded = stats is not None and stats.state == "loaded"
    if pinned or loaded:
        try:
            profile_load(profile=profile, actor=actor(request))
        except EngineError as exc:
            return _engine_refusal(request, profile, exc)
    return _after_action(request, f"{'Pinned' if pinned else 'Unpinned'} “{name}”.")
