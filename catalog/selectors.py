"""Reads for the catalog: servable profiles, hub search and model details (cached briefly), jobs, local models."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.db.models import QuerySet

from catalog import hub
from catalog.constants import (
    DEFAULT_AUTHOR,
    KIND_PIPELINE_TAGS,
    SEARCH_EXPAND,
    SEARCH_MAX_CANDIDATES,
    SEARCH_PAGE_SIZE,
    SEARCH_SORTS,
)
from catalog.model_facts import (
    card_parts,
    facts_from_config,
    fits_memory,
    memory_budget_bytes,
    quantization_of,
    weights_bytes,
)
from catalog.models import Download, HubToken, LocalModel, Profile
from inference.engine.stats import ModelStats
from mlxhub import crypto
from mlxhub.accounts.models import Role
from mlxhub.accounts.selectors import user_role


def profiles_servable() -> QuerySet[Profile]:
    return Profile.objects.select_related("local_model").filter(enabled=True).order_by("name")


async def profile_for_model_name(*, name: str) -> Profile | None:
    return await profiles_servable().filter(name=name).afirst()


# The Hugging Face token.
def hub_token_is_set() -> bool:
    return HubToken.objects.filter(pk=HubToken.SINGLETON_ID).exists()


def hub_token_value() -> str | None:
    """The decrypted token, for requests to the hub only: never rendered, logged or returned by the API."""
    row = HubToken.objects.filter(pk=HubToken.SINGLETON_ID).only("encrypted_token").first()
    return crypto.decrypt(row.encrypted_token) if row is not None else None


# Hub search.
@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    author: str = DEFAULT_AUTHOR  # "" searches every author
    kind: str = ""
    quantization: str = ""
    architecture: str = ""
    sort: str = "downloads"
    page: int = 1
    per_page: int = SEARCH_PAGE_SIZE
    max_size_bytes: int | None = None  # the repository's stored size; the hub cannot filter on it

    def __post_init__(self) -> None:
        if self.sort not in SEARCH_SORTS:
            raise ValueError(f"sort must be one of {', '.join(SEARCH_SORTS)}")
        if self.kind and self.kind not in KIND_PIPELINE_TAGS:
            raise ValueError(f"kind must be one of {', '.join(KIND_PIPELINE_TAGS)}")
        if self.page < 1 or self.per_page < 1:
            raise ValueError("page and per_page start at 1")


@dataclass(frozen=True)
class SearchPage:
    results: list[dict[str, Any]]
    page: int
    per_page: int
    has_next: bool
    query: dict[str, Any] = field(default_factory=dict)


def _cache_key(prefix: str, token: str | None, **parts: Any) -> str:
    # The token changes what the hub shows (private and gated repositories): it is part of the key, hashed.
    material = json.dumps({"endpoint": hub.endpoint(), "token": token or "", **parts}, sort_keys=True)
    return f"catalog:{prefix}:{hashlib.sha256(material.encode()).hexdigest()}"


def _summary(model: Any) -> dict[str, Any]:
    config = model.config or {}
    tags = model.tags or []
    facts = facts_from_config(config, tags=tags, repo_id=model.id, pipeline_tag=model.pipeline_tag)
    card = model.card_data.to_dict() if model.card_data is not None else {}
    licence = card.get("license") or next((tag.split(":", 1)[1] for tag in tags if tag.startswith("license:")), "")
    return {
        "repo_id": model.id,
        "author": model.author or model.id.split("/")[0],
        **facts,
        "quantization": facts["quantization"] or quantization_of({}, tags=tags, repo_id=model.id),
        "downloads": model.downloads or 0,
        "likes": model.likes or 0,
        "last_modified": model.last_modified.isoformat() if model.last_modified else None,
        "size_bytes": model.used_storage,
        "pipeline_tag": model.pipeline_tag or "",
        "gated": bool(model.gated),
        "license": licence or "",
        "tags": tags,
    }


def _matches(summary: dict[str, Any], query: SearchQuery) -> bool:
    if query.max_size_bytes is not None and (summary["size_bytes"] or 0) > query.max_size_bytes:
        return False
    if query.quantization and summary["quantization"].lower() != query.quantization.lower():
        return False
    if query.architecture:
        wanted = query.architecture.lower()
        architecture = summary["architecture"].lower()
        if wanted != architecture and wanted not in architecture:
            return False
    return True


def hub_search(query: SearchQuery) -> SearchPage:
    """One page of hub models; quantization and architecture are filtered here (the hub cannot)."""
    token = hub_token_value()
    key = _cache_key("search", token, **asdict(query))
    cached = cache.get(key)
    if cached is not None:
        return SearchPage(**cached)
    filtering_here = bool(query.quantization or query.architecture or query.max_size_bytes is not None)
    wanted = query.page * query.per_page + 1  # one more than the page: is there a next one?
    models = hub.call(
        "the model search",
        lambda: list(
            hub.api(token).list_models(
                search=query.text or None,
                author=query.author or None,
                pipeline_tag=KIND_PIPELINE_TAGS.get(query.kind) or None,
                sort=SEARCH_SORTS[query.sort],  # type: ignore[arg-type]
                limit=SEARCH_MAX_CANDIDATES if filtering_here else wanted,
                expand=SEARCH_EXPAND,  # type: ignore[arg-type]
            )
        ),
    )
    summaries = [summary for summary in map(_summary, models) if _matches(summary, query)]
    start = (query.page - 1) * query.per_page
    page = SearchPage(
        results=summaries[start : start + query.per_page],
        page=query.page,
        per_page=query.per_page,
        has_next=len(summaries) > start + query.per_page,
        query=asdict(query),
    )
    cache.set(key, asdict(page), settings.MLXHUB_HUB_CACHE_SECONDS)
    return page


def hub_model_detail(*, repo_id: str, revision: str | None = None) -> dict[str, Any]:
    """Files with real sizes, facts from config.json and the card, and whether it fits this machine."""
    detail = _hub_model_facts(repo_id=repo_id, revision=revision)
    budget = memory_budget_bytes(settings.MLXHUB_MEMORY_BUDGET_BYTES)
    return {**detail, "memory_budget_bytes": budget, "fits_memory": fits_memory(detail["weights_bytes"], budget)}


def _hub_model_facts(*, repo_id: str, revision: str | None) -> dict[str, Any]:
    token = hub_token_value()
    key = _cache_key("detail", token, repo_id=repo_id, revision=revision)
    cached = cache.get(key)
    if cached is not None:
        return dict(cached)
    info = hub.model_info(repo_id, revision=revision, token=token)
    commit = info.sha or revision or "main"
    files: list[dict[str, Any]] = [
        {"path": sibling.rfilename, "size": sibling.size or 0} for sibling in info.siblings or []
    ]
    config_text = hub.read_text(repo_id, "config.json", revision=commit, token=token)
    try:
        config = json.loads(config_text) if config_text else {}
    except ValueError:
        config = {}
    readme = hub.read_text(repo_id, "README.md", revision=commit, token=token) or ""
    card, summary_text = card_parts(readme)
    summary = _summary(info)
    facts = facts_from_config(
        config or info.config or {}, tags=info.tags or [], repo_id=repo_id, pipeline_tag=info.pipeline_tag
    )
    detail = {
        **summary,
        **facts,
        "quantization": facts["quantization"] or summary["quantization"],
        "revision": revision or "main",
        "sha": info.sha,
        "license": summary["license"] or card.get("license", ""),
        "summary": summary_text,
        "files": files,
        "size_bytes": sum(item["size"] for item in files),
        "weights_bytes": weights_bytes((item["path"], item["size"]) for item in files),
    }
    cache.set(key, detail, settings.MLXHUB_HUB_CACHE_SECONDS)
    return detail


# Jobs and local models.
def downloads_visible() -> QuerySet[Download]:
    return Download.objects.select_related("requested_by", "local_model").order_by("-created_at")


def download_changeable_by(*, user: User | AnonymousUser, download: Download) -> bool:
    """Whether ``user`` may pause, resume or cancel ``download``: admins any job, members the jobs they asked for.

    A job nobody asked for (started by a script or the system) is for admins only.
    """
    if not user.is_authenticated:
        return False
    if user_role(user=cast(User, user)) == Role.ADMIN:
        return True
    return download.requested_by_id is not None and download.requested_by_id == user.pk


def download_active_for(*, repo_id: str, revision: str) -> Download | None:
    return Download.objects.filter(repo_id=repo_id, revision=revision, status__in=Download.ACTIVE_STATUSES).first()


def local_models_listed() -> QuerySet[LocalModel]:
    return LocalModel.objects.prefetch_related("profiles").order_by("repo_id", "path")


# The engine's pool as the pages show it; ``pool`` is catalog.services.pool.pool_models(), read once per page.
@dataclass(frozen=True)
class PoolMemory:
    budget_bytes: int
    weights_bytes: int
    cache_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.weights_bytes + self.cache_bytes

    @property
    def free_bytes(self) -> int:
        return max(0, self.budget_bytes - self.used_bytes)

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.used_bytes / self.budget_bytes) if self.budget_bytes else 0.0


def pool_memory(*, pool: dict[str, ModelStats]) -> PoolMemory:
    """Loaded weights plus the shared prefix cache, against the memory budget."""
    loaded = [stats for stats in pool.values() if stats.state == "loaded"]
    return PoolMemory(
        budget_bytes=memory_budget_bytes(settings.MLXHUB_MEMORY_BUDGET_BYTES),
        weights_bytes=sum(stats.memory_bytes for stats in loaded),
        # Every model's figures carry the one prefix cache's size: count it once.
        cache_bytes=max((stats.prefix_cache_bytes for stats in loaded), default=0),
    )


@dataclass(frozen=True)
class ProfileState:
    profile: Profile
    stats: ModelStats

    @property
    def state(self) -> str:
        return self.stats.state

    @property
    def busy(self) -> bool:
        return self.stats.state == "loading" or self.stats.active_requests > 0

    @property
    def kernel(self) -> str:
        """How the weights are served: "optimized, float32 via mkl" or "stock, bfloat16"; "" unless loaded."""
        if self.stats.state != "loaded":
            return ""
        words = ", ".join(part for part in (self.stats.kernel_path, self.stats.weights_dtype) if part)
        return f"{words} via {self.stats.blas}" if self.stats.blas and words else words


def profiles_with_state(*, pool: dict[str, ModelStats], enabled_only: bool = False) -> list[ProfileState]:
    profiles = Profile.objects.select_related("local_model").order_by("name")
    if enabled_only:
        profiles = profiles.filter(enabled=True)
    # The pool knows models by their folder; one the engine has not seen is unloaded.
    return [
        ProfileState(profile, pool.get(profile.local_model.path) or ModelStats(key=profile.local_model.path))
        for profile in profiles
    ]


def local_model_fits(*, local_model: LocalModel) -> bool:
    """Whether the folder's weights fit the memory budget (its size on disk, the weights being most of it)."""
    return fits_memory(local_model.size_bytes, memory_budget_bytes(settings.MLXHUB_MEMORY_BUDGET_BYTES))
