"""Control API for API keys: list, create (the secret is returned once), revoke."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action

# DRF's get_object_or_404 answers 404 for an id that is not a number (Django's raises ValueError: a 500).
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from mlxhub.accounts.limits import limits_usage
from mlxhub.accounts.models import ApiKey, KeyScope, Role, Team
from mlxhub.accounts.selectors import api_keys_visible_to
from mlxhub.accounts.serializers import ApiKeySerializer, CreatedApiKeySerializer, TeamSerializer
from mlxhub.accounts.services import (
    LIMIT_FIELDS,
    api_key_create,
    api_key_revoke,
    api_key_update,
    team_create,
    team_update,
)


def _user(request: Request) -> User:
    # HasRole has already refused anonymous callers.
    return cast(User, request.user)


class ApiKeyViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    read_role = Role.VIEWER
    write_role = Role.MEMBER
    serializer_class = ApiKeySerializer  # for the schema; the methods name their serializers
    queryset = ApiKey.objects.none()  # for the schema's path types; rows come from api_keys_visible_to

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(api_keys_visible_to(user=_user(request)))
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        api_key = get_object_or_404(api_keys_visible_to(user=_user(request)), pk=pk)
        return Response({**ApiKeySerializer(api_key).data, "usage": limits_usage(owner=api_key)})

    @extend_schema(responses={201: CreatedApiKeySerializer})
    def create(self, request: Request) -> Response:
        serializer = ApiKeySerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        created = api_key_create(
            owner=_user(request),
            name=serializer.validated_data["name"],
            team=serializer.validated_data.get("team"),
            allowed_models=serializer.validated_data.get("allowed_models", []),
            expires_at=serializer.validated_data.get("expires_at"),
            scope=serializer.validated_data.get("scope", KeyScope.INFERENCE),
            limits={
                name: serializer.validated_data[name] for name in LIMIT_FIELDS if name in serializer.validated_data
            },
            actor=_user(request),
        )
        body = CreatedApiKeySerializer(created.api_key, context={"secret": created.secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        api_key: ApiKey = get_object_or_404(api_keys_visible_to(user=_user(request)), pk=pk)
        api_key_revoke(api_key=api_key, actor=_user(request))
        return Response(ApiKeySerializer(api_key).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        api_key: ApiKey = get_object_or_404(api_keys_visible_to(user=_user(request)), pk=pk)
        serializer = ApiKeySerializer(api_key, data=request.data, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        api_key_update(api_key=api_key, actor=_user(request), **serializer.validated_data)
        return Response(ApiKeySerializer(api_key).data)

    def destroy(self, request: Request, pk: str) -> Response:
        """DELETE revokes: rows stay for the audit trail."""
        api_key: ApiKey = get_object_or_404(api_keys_visible_to(user=_user(request)), pk=pk)
        api_key_revoke(api_key=api_key, actor=_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Teams and their limits: everyone with a role reads; only admins write."""

    read_role = Role.VIEWER
    write_role = Role.ADMIN
    serializer_class = TeamSerializer  # for the schema
    queryset = Team.objects.none()  # for the schema's path types

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(Team.objects.order_by("name"))
        return self.get_paginated_response(TeamSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        team = get_object_or_404(Team, pk=pk)
        return Response({**TeamSerializer(team).data, "usage": limits_usage(owner=team)})

    def create(self, request: Request) -> Response:
        serializer = TeamSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_create(name=data.pop("name"), slug=data.pop("slug"), actor=_user(request), limits=data)
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        team = get_object_or_404(Team, pk=pk)
        serializer = TeamSerializer(team, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        team_update(team=team, actor=_user(request), **serializer.validated_data)
        return Response(TeamSerializer(team).data)
