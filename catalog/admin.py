from __future__ import annotations

from django.contrib import admin

from catalog.models import LocalModel, Profile


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    list_display = ["repo_id", "kind", "architecture", "quantization", "size_bytes", "context_length", "created_at"]
    list_filter = ["kind"]
    search_fields = ["repo_id", "path"]
    readonly_fields = ["created_at"]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "local_model", "pinned", "enabled", "default_max_tokens", "created_at"]
    list_filter = ["enabled", "pinned"]
    list_select_related = ["local_model"]
    search_fields = ["name", "local_model__repo_id"]
    autocomplete_fields = ["local_model"]
