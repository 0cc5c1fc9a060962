"""Control API for the catalog: hub search and details, downloads, local models, the hub token.

Errors are RFC 7807 problems (mlxhub.problems): a hub failure keeps its meaning (404 unknown repository,
403 gated, 503 hub unreachable), a refused download says why (507 not enough disk).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from huggingface_hub.utils import HFValidationError, validate_repo_id
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.constants import DEFAULT_AUTHOR, KIND_PIPELINE_TAGS, SEARCH_MAX_PAGE_SIZE, SEARCH_PAGE_SIZE, SEARCH_SORTS
from catalog.hub import HubError
from catalog.models import Download, LocalModel
from catalog.selectors import (
    SearchQuery,
    downloads_visible,
    hub_model_detail,
    hub_search,
    hub_token_is_set,
    local_models_listed,
)
from catalog.services import (
    DownloadRefused,
    DownloadStateError,
    LocalModelInUse,
    download_cancel,
    download_pause,
    download_resume,
    download_start,
    hub_token_clear,
    hub_token_set,
    local_model_delete,
    local_models_scan,
)
from mlxhub.accounts.models import Role


class CatalogProblem(APIException):
    """An error with its own status code, rendered as a problem by mlxhub.problems."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


def _problem_from(exc: Exception) -> CatalogProblem:
    if isinstance(exc, HubError):
        return CatalogProblem(exc.status, exc.message)
    if isinstance(exc, DownloadRefused):
        return CatalogProblem(exc.status, exc.message)
    if isinstance(exc, DownloadStateError | LocalModelInUse):
        return CatalogProblem(status.HTTP_409_CONFLICT, str(exc))
    raise exc


class SearchParamsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    author = serializers.CharField(required=False, allow_blank=True, default=DEFAULT_AUTHOR, max_length=100)
    kind = serializers.ChoiceField(
        choices=[("", "any"), *((kind, kind) for kind in KIND_PIPELINE_TAGS)], required=False, default=""
    )
    quantization = serializers.CharField(required=False, allow_blank=True, default="", max_length=20)
    architecture = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    sort = serializers.ChoiceField(choices=list(SEARCH_SORTS), required=False, default="downloads")
    page = serializers.IntegerField(required=False, default=1, min_value=1, max_value=1000)
    per_page = serializers.IntegerField(
        required=False, default=SEARCH_PAGE_SIZE, min_value=1, max_value=SEARCH_MAX_PAGE_SIZE
    )

    def query(self) -> SearchQuery:
        data = self.validated_data
        return SearchQuery(
            text=data["q"],
            author=data["author"],
            kind=data["kind"],
            quantization=data["quantization"],
            architecture=data["architecture"],
            sort=data["sort"],
            page=data["page"],
            per_page=data["per_page"],
        )


class DownloadSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    speed = serializers.FloatField(source="speed_bps", read_only=True, help_text="Bytes per second.")
    eta = serializers.IntegerField(source="eta_seconds", read_only=True, help_text="Seconds left; null if unknown.")
    percent = serializers.FloatField(read_only=True)
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Download
        fields = [
            "id",
            "repo_id",
            "revision",
            "commit_sha",
            "status",
            "bytes_done",
            "bytes_total",
            "percent",
            "speed",
            "eta",
            "error",
            "attempts",
            "requested_by",
            "local_model",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class DownloadRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    repo_id = serializers.CharField(max_length=200)
    revision = serializers.CharField(max_length=100, required=False, default="main")

    def validate_repo_id(self, value: str) -> str:
        try:
            validate_repo_id(value)
        except HFValidationError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        if "/" not in value:
            raise serializers.ValidationError("Give the full id, owner/name.")
        return value


class LocalModelSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    profiles = serializers.SerializerMethodField()

    class Meta:
        model = LocalModel
        fields = [
            "id",
            "repo_id",
            "revision",
            "path",
            "kind",
            "architecture",
            "quantization",
            "size_bytes",
            "context_length",
            "profiles",
            "created_at",
        ]
        read_only_fields = fields

    def get_profiles(self, local_model: LocalModel) -> list[str]:
        return [profile.name for profile in local_model.profiles.all()]


class HubSearchView(APIView):
    read_role = Role.VIEWER

    def get(self, request: Request) -> Response:
        params = SearchParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        try:
            page = hub_search(params.query())
        except HubError as exc:
            raise _problem_from(exc) from exc
        return Response(asdict(page))


class HubModelView(APIView):
    read_role = Role.VIEWER

    def get(self, request: Request, repo_id: str) -> Response:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            raise ValidationError({"repo_id": [str(exc)]}) from exc
        try:
            detail: dict[str, Any] = hub_model_detail(repo_id=repo_id, revision=request.query_params.get("revision"))
        except HubError as exc:
            raise _problem_from(exc) from exc
        local = LocalModel.objects.filter(repo_id=repo_id).values_list("pk", flat=True).first()
        active = Download.objects.filter(repo_id=repo_id, status__in=Download.ACTIVE_STATUSES)
        return Response(
            {**detail, "local_model": local, "active_download": active.values_list("pk", flat=True).first()}
        )


class DownloadListView(generics.GenericAPIView):  # type: ignore[type-arg]
    read_role = Role.VIEWER
    write_role = Role.MEMBER

    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(downloads_visible())
        return self.get_paginated_response(DownloadSerializer(page, many=True).data)

    def post(self, request: Request) -> Response:
        body = DownloadRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            started = download_start(
                repo_id=body.validated_data["repo_id"],
                revision=body.validated_data["revision"],
                requested_by=cast(User, request.user),
            )
        except (HubError, DownloadRefused) as exc:
            raise _problem_from(exc) from exc
        return Response(
            DownloadSerializer(started.download).data,
            status=status.HTTP_201_CREATED if started.created else status.HTTP_200_OK,
        )


class DownloadDetailView(APIView):
    read_role = Role.VIEWER

    def get(self, request: Request, pk: int) -> Response:
        return Response(DownloadSerializer(get_object_or_404(downloads_visible(), pk=pk)).data)


class DownloadActionView(APIView):
    """POST downloads/{id}/pause|resume|cancel/."""

    write_role = Role.MEMBER
    actions = {"pause": download_pause, "resume": download_resume, "cancel": download_cancel}

    def post(self, request: Request, pk: int, action: str) -> Response:
        download = get_object_or_404(Download, pk=pk)
        try:
            download = self.actions[action](download=download, actor=cast(User, request.user))
        except DownloadStateError as exc:
            raise _problem_from(exc) from exc
        return Response(DownloadSerializer(download).data)


class LocalModelListView(APIView):
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def get(self, request: Request) -> Response:
        return Response(LocalModelSerializer(local_models_listed(), many=True).data)

    def post(self, request: Request) -> Response:
        """POST local/ scans the models folder and the Hugging Face cache."""
        result = local_models_scan()
        return Response(
            {
                "registered": LocalModelSerializer(result.registered, many=True).data,
                "skipped": result.skipped,
                "missing": [model.pk for model in result.missing],
            }
        )


class LocalModelDetailView(APIView):
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def get(self, request: Request, pk: int) -> Response:
        return Response(LocalModelSerializer(get_object_or_404(local_models_listed(), pk=pk)).data)

    def delete(self, request: Request, pk: int) -> Response:
        local_model = get_object_or_404(LocalModel, pk=pk)
        force = request.query_params.get("force", "").lower() in {"1", "true", "yes"}
        try:
            deleted = local_model_delete(local_model=local_model, force=force, actor=cast(User, request.user))
        except LocalModelInUse as exc:
            raise _problem_from(exc) from exc
        return Response(asdict(deleted))


class HubTokenView(APIView):
    """PUT stores the token (encrypted; it is never returned), DELETE forgets it, GET says whether one is set."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get(self, request: Request) -> Response:
        return Response({"set": hub_token_is_set()})

    def put(self, request: Request) -> Response:
        token = str(request.data.get("token", "")).strip() if hasattr(request.data, "get") else ""
        if not token:
            raise ValidationError({"token": ["This field is required."]})
        hub_token_set(token=token, actor=cast(User, request.user))
        return Response({"set": True})

    def delete(self, request: Request) -> Response:
        hub_token_clear(actor=cast(User, request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UnknownUrlView(APIView):
    """Any other URL under /api/catalog/: a 404 problem rather than Django's HTML page."""

    permission_classes: list[Any] = []
    authentication_classes: list[Any] = []

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"Unknown URL: {request.method} {request.path}")

    post = put = patch = delete = options = get
