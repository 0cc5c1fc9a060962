"""/playground/: chat with a profile, the reply streaming token by token, and compare two texts' embeddings.

The page's own script (static/mlxhub/playground.js) calls /v1/chat/completions and /v1/embeddings with the
session cookie and the CSRF token instead of an API key, so a reply goes through the same admission, limits,
audit and engine as any client's; Stop aborts the fetch, and the server cancels the generation when the
client goes away. This view only renders the page and the profiles the script may offer.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from catalog.models import ModelKind
from catalog.selectors import profiles_with_state
from catalog.services.pool import pool_models
from mlxhub.accounts.models import Role
from mlxhub.pages import has_role, render_page, role_required


@role_required(Role.VIEWER)
def playground_page(request: HttpRequest) -> HttpResponse:
    rows = profiles_with_state(pool=pool_models(), enabled_only=True)
    profiles = [
        {
            "name": row.profile.name,
            "kind": row.profile.local_model.kind,
            "state": row.state,
            "system_prompt": row.profile.system_prompt,
            "temperature": row.profile.default_temperature,
            "max_tokens": row.profile.default_max_tokens,
            "context_length": row.profile.effective_context_length(),
        }
        for row in rows
    ]
    chat = [profile for profile in profiles if profile["kind"] != ModelKind.EMBEDDING]
    embedding = [profile for profile in profiles if profile["kind"] == ModelKind.EMBEDDING]
    wanted = request.GET.get("profile", "")
    config = {
        "chat_url": "/v1/chat/completions",
        "embeddings_url": "/v1/embeddings",
        "base_url": request.build_absolute_uri("/v1"),
        "anthropic_base_url": request.build_absolute_uri("/").rstrip("/"),
        "profiles": profiles,
        "selected": wanted if any(profile["name"] == wanted for profile in chat) else "",
        "can_use": has_role(request, Role.MEMBER),
    }
    context = {"config": config, "chat_profiles": chat, "embedding_profiles": embedding}
    return render_page(request, "catalog/playground.html", context)
