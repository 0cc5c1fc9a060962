"""Control API: /api/routing/credentials/ (secret write-only), /api/routing/rules/, /api/routing/resolve/."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mlxhub.accounts.models import Role
from routing.constants import MODEL_NAME_MAX_LENGTH
from routing.models import ProviderCredential, RoutingFallback, RoutingRule, validate_target
from routing.selectors import routing_rule_resolve
from routing.services import (
    MOVE_REFUSED_MESSAGE,
    credential_create,
    credential_delete,
    credential_needs_secret,
    credential_update,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
)


class RoutingConflict(APIException):
    """A write refused by the rows that depend on it; rendered as a 409 problem by mlxhub.problems."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class CredentialSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    secret = serializers.CharField(write_only=True, required=False, trim_whitespace=True, min_length=1)
    secret_mask = serializers.CharField(read_only=True)

    class Meta:
        model = ProviderCredential
        fields = ["id", "name", "provider", "base_url", "secret", "secret_mask", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("secret"):
            raise serializers.ValidationError({"secret": "A new credential needs its secret."})
        if (
            self.instance is not None
            and not attrs.get("secret")
            and credential_needs_secret(
                credential=self.instance, provider=attrs.get("provider"), base_url=attrs.get("base_url")
            )
        ):
            raise serializers.ValidationError({"secret": MOVE_REFUSED_MESSAGE})
        return attrs


class CredentialViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    # Provider accounts cost money: only admins read or write them.
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    serializer_class = CredentialSerializer
    queryset = ProviderCredential.objects.all()

    # The services' full_clean checks the row as a whole (an OpenAI-compatible provider needs a base URL):
    # its refusal is a 400 problem that names the field.
    def perform_create(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        try:
            serializer.instance = credential_create(actor=cast(User, self.request.user), **data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc

    def perform_update(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        actor = cast(User, self.request.user)  # HasRole has refused anonymous callers
        try:
            serializer.instance = credential_update(credential=serializer.instance, actor=actor, **data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc

    def perform_destroy(self, instance: ProviderCredential) -> None:
        try:
            credential_delete(credential=instance, actor=cast(User, self.request.user))
        except ProtectedError as exc:
            # A fallback row names its rule; the rule is what a person recognises.
            holders = ", ".join(sorted({str(getattr(holder, "rule", holder)) for holder in exc.protected_objects}))
            raise RoutingConflict(f"{instance.name} is a target of routing rules: {holders}.") from exc


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
        raise _as_drf(exc) from exc


def _as_drf(exc: DjangoValidationError) -> serializers.ValidationError:
    """A model's validation error as DRF's, so it renders as a 400 problem that names the field."""
    if hasattr(exc, "error_dict"):
        errors = exc.message_dict
        return serializers.ValidationError(
            {("non_field_errors" if name == NON_FIELD_ERRORS else name): errors[name] for name in errors}
        )
    return serializers.ValidationError({"non_field_errors": exc.messages})


class RuleSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    fallbacks = FallbackSerializer(many=True, required=False)

    class Meta:
        model = RoutingRule
        fields = [
            "id", "name", "pattern", "match", "priority", "enabled",
            "target_profile", "target_credential", "target_model", "fallbacks", "created_at", "updated_at",
        ]  # fmt: skip

    # Field shapes are checked here; the rule as a whole (one target, a pattern that compiles, a unique name)
    # by the service's full_clean, inside its transaction.
    def create(self, validated_data: dict[str, Any]) -> RoutingRule:
        actor = cast(User, self.context["request"].user)  # HasRole has refused anonymous callers
        try:
            return routing_rule_create(actor=actor, **validated_data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc

    def update(self, instance: RoutingRule, validated_data: dict[str, Any]) -> RoutingRule:
        actor = cast(User, self.context["request"].user)
        fallbacks = validated_data.pop("fallbacks", None)
        try:
            return routing_rule_update(rule=instance, actor=actor, fallbacks=fallbacks, **validated_data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc


class RuleViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    serializer_class = RuleSerializer
    queryset = RoutingRule.objects.prefetch_related("fallbacks")

    def perform_destroy(self, instance: RoutingRule) -> None:
        routing_rule_delete(rule=instance, actor=cast(User, self.request.user))


class ResolveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    # The /v1 cap on `model`, checked here so a long name is a 400 naming the field, not work for every rule.
    model = serializers.CharField(max_length=MODEL_NAME_MAX_LENGTH, trim_whitespace=False)


class ResolveView(APIView):
    read_role = Role.VIEWER
    write_role = Role.VIEWER  # a POST that changes nothing

    @extend_schema(request=ResolveSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(routing_rule_resolve(model_name=serializer.validated_data["model"]).describe())
