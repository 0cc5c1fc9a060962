"""Control API: /api/routing/credentials/ (secret write-only), /api/routing/rules/, /api/routing/resolve/."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AdminAction
from audit.services import admin_action_record
from mlxhub.accounts.models import Role
from routing.constants import MODEL_NAME_MAX_LENGTH
from routing.models import ProviderCredential, RoutingFallback, RoutingRule, validate_target
from routing.selectors import routing_rule_resolve
from routing.services import credential_create, credential_update


class CredentialSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    secret = serializers.CharField(write_only=True, required=False, trim_whitespace=True, min_length=1)
    secret_mask = serializers.CharField(read_only=True)

    class Meta:
        model = ProviderCredential
        fields = ["id", "name", "provider", "base_url", "secret", "secret_mask", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("secret"):
            raise serializers.ValidationError({"secret": "A new credential needs its secret."})
        return attrs


class CredentialViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    # Provider accounts cost money: only admins read or write them.
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    serializer_class = CredentialSerializer
    queryset = ProviderCredential.objects.all()

    def perform_create(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = credential_create(actor=self.request.user, **data)  # type: ignore[arg-type]

    def perform_update(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        actor = cast(User, self.request.user)  # HasRole has refused anonymous callers
        serializer.instance = credential_update(credential=serializer.instance, actor=actor, **data)

    @transaction.atomic
    def perform_destroy(self, instance: ProviderCredential) -> None:
        admin_action_record(actor=self.request.user, action=AdminAction.Action.DELETED, obj=instance)  # type: ignore[arg-type]
        instance.delete()


class FallbackSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = RoutingFallback
        fields = ["position", "target_profile", "target_credential", "target_model"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _check_target(attrs)
        return attrs


def _check_target(attrs: dict[str, Any]) -> None:
    profile, credential = attrs.get("target_profile"), attrs.get("target_credential")
    try:
        validate_target(profile and profile.pk, credential and credential.pk, attrs.get("target_model", ""))
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc


class RuleSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    fallbacks = FallbackSerializer(many=True, required=False)

    class Meta:
        model = RoutingRule
        fields = [
            "id", "name", "pattern", "match", "priority", "enabled",
            "target_profile", "target_credential", "target_model", "fallbacks", "created_at", "updated_at",
        ]  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = {**({} if self.instance is None else self.to_internal_value_of(self.instance)), **attrs}
        _check_target(merged)
        rule = RoutingRule(**{name: value for name, value in merged.items() if name != "fallbacks"})
        try:
            rule.clean()
        except Exception as exc:
            raise serializers.ValidationError(getattr(exc, "message_dict", {"pattern": str(exc)})) from exc
        return attrs

    @staticmethod
    def to_internal_value_of(rule: RoutingRule) -> dict[str, Any]:
        return {
            "name": rule.name,
            "pattern": rule.pattern,
            "match": rule.match,
            "priority": rule.priority,
            "enabled": rule.enabled,
            "target_profile": rule.target_profile,
            "target_credential": rule.target_credential,
            "target_model": rule.target_model,
        }

    @transaction.atomic
    def create(self, validated_data: dict[str, Any]) -> RoutingRule:
        fallbacks = validated_data.pop("fallbacks", [])
        rule = RoutingRule.objects.create(**validated_data)
        for fallback in fallbacks:
            RoutingFallback.objects.create(rule=rule, **fallback)
        admin_action_record(actor=self.context["request"].user, action=AdminAction.Action.CREATED, obj=rule)
        return rule

    @transaction.atomic
    def update(self, instance: RoutingRule, validated_data: dict[str, Any]) -> RoutingRule:
        fallbacks = validated_data.pop("fallbacks", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        if fallbacks is not None:
            instance.fallbacks.all().delete()
            for fallback in fallbacks:
                RoutingFallback.objects.create(rule=instance, **fallback)
        changes = {name: str(value) for name, value in validated_data.items()}
        admin_action_record(
            actor=self.context["request"].user, action=AdminAction.Action.CHANGED, obj=instance, changes=changes
        )
        return instance


class RuleViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    serializer_class = RuleSerializer
    queryset = RoutingRule.objects.prefetch_related("fallbacks")

    @transaction.atomic
    def perform_destroy(self, instance: RoutingRule) -> None:
        admin_action_record(actor=self.request.user, action=AdminAction.Action.DELETED, obj=instance)  # type: ignore[arg-type]
        instance.delete()


class ResolveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    # The /v1 cap on `model`, checked here so a long name is a 400 naming the field, not work for every rule.
    model = serializers.CharField(max_length=MODEL_NAME_MAX_LENGTH, trim_whitespace=False)


class ResolveView(APIView):
    read_role = Role.VIEWER
    write_role = Role.VIEWER  # a POST that changes nothing

    def post(self, request: Request) -> Response:
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(routing_rule_resolve(model_name=serializer.validated_data["model"]).describe())
