from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mlxhub.accounts.models import ApiKey, Role, Team
from mlxhub.accounts.selectors import user_role
from mlxhub.accounts.services import ADMIN_ONLY_KEY_FIELDS, LIMIT_FIELDS


class ApiKeySerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True)
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list)
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "owner",
            "team",
            "allowed_models",
            "scope",
            "expires_at",
            "rpm",
            "tpm",
            "max_concurrent",
            "token_budget",
            "budget_period",
            "revoked",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = ["prefix", "revoked_at", "last_used_at", "created_at"]

    def get_revoked(self, api_key: ApiKey) -> bool:
        return api_key.is_revoked

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Limits are the admins' to set; once a key exists, so are its models, expiry, scope and team: a
        member (or a member's key) cannot lift a key's restrictions, only rename it."""
        user = self.context["request"].user
        if user_role(user=user) == Role.ADMIN:
            return attrs
        if any(name in attrs for name in LIMIT_FIELDS):
            raise serializers.ValidationError("Only admins set a key's limits.")
        if self.instance is not None:
            restricted = sorted(name for name in ADMIN_ONLY_KEY_FIELDS if name in self.initial_data)
            if restricted:
                raise serializers.ValidationError(
                    dict.fromkeys(restricted, "Only admins change this once the key exists; make a new key instead.")
                )
        if self.instance is None and attrs.get("team") is None:
            teams = list(Team.objects.filter(memberships__user=user)[:2])
            if len(teams) != 1:
                raise serializers.ValidationError({"team": "Choose one of your teams."})
            attrs["team"] = teams[0]  # a member's key always answers to their team's limits
        return attrs

    def validate_team(self, team: Team | None) -> Team | None:
        request = self.context["request"]
        if (
            team is not None
            and not request.user.is_superuser
            and not team.memberships.filter(user=request.user).exists()
        ):
            raise serializers.ValidationError("You are not a member of this team.")
        return team


class CreatedApiKeySerializer(ApiKeySerializer):
    secret = serializers.SerializerMethodField()

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]

    def get_secret(self, api_key: ApiKey) -> Any:
        return self.context["secret"]


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "rpm", "tpm", "max_concurrent", "token_budget", "budget_period", "created_at"]
        read_only_fields = ["created_at"]
