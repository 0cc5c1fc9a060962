"""Control API: the audit trail and usage sums; /metrics for Prometheus."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.constants import AUDIT_FIELDS
from audit.metrics import REGISTRY
from audit.models import AuditLog
from audit.selectors import USAGE_GROUPS, USAGE_PERIODS, audit_rows_filtered, usage_summary
from mlxhub.accounts.models import Role
from mlxhub.accounts.selectors import user_role
from mlxhub.accounts.services import ApiKeyError, api_key_authenticate, secret_from_headers
from mlxhub.pagination import Pagination


class AuditLogSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None)
    team = serializers.CharField(source="team.slug", default=None)

    class Meta:
        model = AuditLog
        fields = AUDIT_FIELDS


class AuditQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    model = serializers.CharField(required=False)
    status = serializers.IntegerField(required=False, min_value=100, max_value=599)


class UsageQuery(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=sorted(USAGE_GROUPS), default="key")
    period = serializers.ChoiceField(choices=sorted(USAGE_PERIODS), default="month")


class AuditLogView(APIView):
    read_role = Role.VIEWER

    @extend_schema(
        parameters=[AuditQuery, OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=AuditLogSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = AuditQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = audit_rows_filtered(
            user=cast(User, request.user),
            since=query.validated_data.get("since"),
            model=query.validated_data.get("model"),
            status=query.validated_data.get("status"),
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(AuditLogSerializer(page, many=True).data)


class UsageView(APIView):
    read_role = Role.VIEWER

    @extend_schema(parameters=[UsageQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = usage_summary(
            user=cast(User, request.user),
            group_by=query.validated_data["group_by"],
            period=query.validated_data["period"],
        )
        return Response(
            {"group_by": query.validated_data["group_by"], "period": query.validated_data["period"], "results": data}
        )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; needs an admin's API key unless MLXHUB_METRICS_PUBLIC is on."""
    if not settings.MLXHUB_METRICS_PUBLIC:
        try:
            api_key = api_key_authenticate(secret=secret_from_headers(request.headers))
        except ApiKeyError as exc:
            return HttpResponse(f"{exc}\n", status=401, content_type="text/plain")
        if user_role(user=api_key.owner) != Role.ADMIN:
            return HttpResponse("An admin's API key is needed.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
