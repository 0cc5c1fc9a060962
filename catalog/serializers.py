"""Serializers for the catalog's control API that more than one view shares."""

from __future__ import annotations

from rest_framework import serializers

from catalog.models import LocalModel, Profile
from inference.engine.stats import ModelStats

# OpenAI's ranges: what a request may send is what a profile may default to.
TEMPERATURE_MAX = 2.0
TOP_P_MAX = 1.0


class ProfileSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A profile and, read-only, its model's live state in the engine's pool.

    The view passes the pool's stats (``pool``: folder path → stats) in the context, read once per response.
    """

    local_model = serializers.PrimaryKeyRelatedField(queryset=LocalModel.objects.all())
    local_model_repo_id = serializers.CharField(source="local_model.repo_id", read_only=True)
    kind = serializers.CharField(source="local_model.kind", read_only=True)
    default_temperature = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=TEMPERATURE_MAX
    )
    default_top_p = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=TOP_P_MAX)
    default_max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    context_length = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    idle_ttl_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Seconds idle before unloading; null: the default."
    )
    state = serializers.SerializerMethodField(help_text="loaded, loading or unloaded.")
    weights_bytes = serializers.SerializerMethodField()
    active_requests = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = [
            "id", "name", "local_model", "local_model_repo_id", "kind", "system_prompt",
            "default_temperature", "default_top_p", "default_max_tokens", "context_length",
            "pinned", "idle_ttl_seconds", "enabled", "created_at",
            "state", "weights_bytes", "active_requests",
        ]  # fmt: skip
        read_only_fields = ["id", "created_at"]

    def _pool_stats(self, profile: Profile) -> ModelStats:
        key = profile.local_model.path
        stats: ModelStats = self.context.get("pool", {}).get(key) or ModelStats(key=key)
        return stats

    def get_state(self, profile: Profile) -> str:
        return self._pool_stats(profile).state

    def get_weights_bytes(self, profile: Profile) -> int:
        return self._pool_stats(profile).memory_bytes

    def get_active_requests(self, profile: Profile) -> int:
        return self._pool_stats(profile).active_requests
