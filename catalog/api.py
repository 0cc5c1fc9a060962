"""Control API for the catalog: hub search and details, downloads, local models, the hub token, profiles and
loading their models.

Errors are RFC 7807 problems (mlxhub.problems): a hub failure keeps its meaning (404 unknown repository,
403 gated, 503 hub unreachable), a refused download says why (507 not enough disk), a model that does not fit
the memory budget is a 503 with Retry-After.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import ProtectedError, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from huggingface_hub.utils import HFValidationError, validate_repo_id
from rest_framework import generics, serializers, status, viewsets
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.constants import (
    DEFAULT_AUTHOR,
    DOWNLOAD_NOT_YOURS,
    KIND_PIPELINE_TAGS,
    SEARCH_MAX_PAGE_SIZE,
    SEARCH_PAGE_SIZE,
    SEARCH_SORTS,
)
from catalog.hub import HubError
from catalog.models import Download, LocalModel, Profile
from catalog.selectors import (
    SearchQuery,
    download_changeable_by,
    downloads_visible,
    hub_model_detail,
    hub_search,
    hub_token_is_set,
    local_models_listed,
)
from catalog.serializers import ProfileSerializer
from catalog.services import (
    DownloadRefused,
    DownloadStateError,
    LocalModelInUse,
    download_cancel,
    download_pause,
    download_resume,
    download_start,
    hub_token_clear,
    hub_token_problem,
    hub_token_set,
    local_model_delete,
    local_models_scan,
    profile_delete,
    profile_save,
)
from catalog.services.pool import pool_models, profile_load, profile_unload
from inference.engine.stats import ModelStats
from inference.engine.types import EngineError
from mlxhub.accounts.models import Role


class CatalogProblem(APIException):
    """An error with its own status code, rendered as a problem by mlxhub.problems."""

    def __init__(self, status_code: int, detail: str, *, retry_after: int | None = None) -> None:
        self.status_code = status_code
        # DRF's handler turns ``wait`` into the Retry-After header; mlxhub.problems keeps it.
        self.wait = retry_after
        super().__init__(detail)


def _problem_from(exc: Exception) -> CatalogProblem:
    if isinstance(exc, EngineError):
        return CatalogProblem(exc.status, str(exc), retry_after=exc.retry_after)
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


# What a hub revision can be (a branch, a tag, a commit, refs/pr/N), and no more: it travels in the hub's URL.
REVISION_PATTERN = re.compile(r"[A-Za-z0-9._/-]{1,100}")


class HubSearchView(APIView):
    read_role = Role.VIEWER

    @extend_schema(parameters=[SearchParamsSerializer], responses=OpenApiTypes.OBJECT)
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

    @extend_schema(parameters=[OpenApiParameter("revision", str)], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, repo_id: str) -> Response:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            raise ValidationError({"repo_id": [str(exc)]}) from exc
        revision = request.query_params.get("revision")
        if revision is not None and not REVISION_PATTERN.fullmatch(revision):
            raise ValidationError({"revision": ["A branch, tag or commit: letters, digits and . _ - /."]})
        try:
            detail: dict[str, Any] = hub_model_detail(repo_id=repo_id, revision=revision)
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
    serializer_class = DownloadSerializer  # for the schema; the methods name their serializers

    @extend_schema(
        operation_id="catalog_downloads_list",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=DownloadSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(downloads_visible())
        return self.get_paginated_response(DownloadSerializer(page, many=True).data)

    @extend_schema(request=DownloadRequestSerializer, responses={200: DownloadSerializer, 201: DownloadSerializer})
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

    @extend_schema(responses=DownloadSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(DownloadSerializer(get_object_or_404(downloads_visible(), pk=pk)).data)


class DownloadActionView(APIView):
    """POST downloads/{id}/pause|resume|cancel/."""

    write_role = Role.MEMBER
    actions = {"pause": download_pause, "resume": download_resume, "cancel": download_cancel}

    @extend_schema(request=None, responses=DownloadSerializer)
    def post(self, request: Request, pk: int, action: str) -> Response:
        download = get_object_or_404(Download, pk=pk)
        if not download_changeable_by(user=request.user, download=download):
            raise PermissionDenied(DOWNLOAD_NOT_YOURS)
        try:
            download = self.actions[action](download=download, actor=cast(User, request.user))
        except DownloadStateError as exc:
            raise _problem_from(exc) from exc
        return Response(DownloadSerializer(download).data)


class LocalModelListView(APIView):
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    @extend_schema(responses=LocalModelSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(LocalModelSerializer(local_models_listed(), many=True).data)

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
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

    @extend_schema(responses=LocalModelSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(LocalModelSerializer(get_object_or_404(local_models_listed(), pk=pk)).data)

    @extend_schema(parameters=[OpenApiParameter("force", bool)], responses=OpenApiTypes.OBJECT)
    def delete(self, request: Request, pk: int) -> Response:
        local_model = get_object_or_404(LocalModel, pk=pk)
        force = request.query_params.get("force", "").lower() in {"1", "true", "yes"}
        try:
            deleted = local_model_delete(local_model=local_model, force=force, actor=cast(User, request.user))
        except LocalModelInUse as exc:
            raise _problem_from(exc) from exc
        return Response(asdict(deleted))


TOKEN_STATE = inline_serializer("HubTokenState", {"set": serializers.BooleanField()})


class HubTokenView(APIView):
    """PUT stores the token (encrypted; it is never returned), DELETE forgets it, GET says whether one is set."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(responses=TOKEN_STATE)
    def get(self, request: Request) -> Response:
        return Response({"set": hub_token_is_set()})

    @extend_schema(request=inline_serializer("HubToken", {"token": serializers.CharField()}), responses=TOKEN_STATE)
    def put(self, request: Request) -> Response:
        token = str(request.data.get("token", "")).strip() if hasattr(request.data, "get") else ""
        if not token:
            raise ValidationError({"token": ["This field is required."]})
        if problem := hub_token_problem(token):
            raise ValidationError({"token": [problem]})
        hub_token_set(token=token, actor=cast(User, request.user))
        return Response({"set": True})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        hub_token_clear(actor=cast(User, request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProfileViewSet(viewsets.ModelViewSet):  # type: ignore[type-arg]
    """/api/profiles/{name}/: the names clients send as ``model``; writes go through the audited services."""

    read_role = Role.VIEWER
    write_role = Role.ADMIN
    serializer_class = ProfileSerializer
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"  # Profile.name is an ASCII slug

    def get_queryset(self) -> QuerySet[Profile]:
        return Profile.objects.select_related("local_model").order_by("name")

    def get_serializer_context(self) -> dict[str, Any]:
        # One snapshot of the pool per response, never per row (and never starting the engine to read it).
        return {**super().get_serializer_context(), "pool": pool_models()}

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        data = dict(serializer.validated_data)
        profile = Profile(**data)
        serializer.instance = profile_save(profile=profile, actor=cast(User, self.request.user), changed=list(data))

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        profile = cast(Profile, serializer.instance)
        changed = [name for name, value in serializer.validated_data.items() if getattr(profile, name) != value]
        for name in changed:
            setattr(profile, name, serializer.validated_data[name])
        serializer.instance = profile_save(profile=profile, actor=cast(User, self.request.user), changed=changed)

    def perform_destroy(self, instance: Profile) -> None:
        # A loaded model stays loaded (other profiles may share its folder); only routing rules hold a profile.
        try:
            profile_delete(profile=instance, actor=cast(User, self.request.user))
        except ProtectedError as exc:
            # A fallback row names its rule; the rule is what a person recognises.
            holders = ", ".join(sorted({str(getattr(holder, "rule", holder)) for holder in exc.protected_objects}))
            raise CatalogProblem(
                status.HTTP_409_CONFLICT, f"{instance.name} is a target of routing rules: {holders}."
            ) from exc


class UnloadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    force = serializers.BooleanField(
        required=False, default=False, help_text="Unload even with requests in flight; they end with a 503."
    )


def _pool_body(profile: Profile, stats: ModelStats) -> dict[str, Any]:
    body = stats.as_wire()
    body.pop("key")  # the folder: `path` says it, for the admins who alone may call these
    return {"id": profile.name, **body}


class ModelLoadView(APIView):
    """POST /api/models/{name}/load: {name} is a profile, as clients name it; 200 with the model's stats."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, name: str) -> Response:
        profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
        try:
            stats = profile_load(profile=profile, actor=cast(User, request.user))
        except EngineError as exc:
            raise _problem_from(exc) from exc
        return Response(_pool_body(profile, stats))


class ModelUnloadView(APIView):
    """POST /api/models/{name}/unload, body optionally {"force": true}; 409 while busy unless forced."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=UnloadSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, name: str) -> Response:
        profile = get_object_or_404(Profile.objects.select_related("local_model"), name=name)
        body = UnloadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = profile_unload(profile=profile, actor=cast(User, request.user), force=body.validated_data["force"])
        except EngineError as exc:
            raise _problem_from(exc) from exc
        return Response({"id": profile.name, "state": result.state})


class UnknownUrlView(APIView):
    """Any other URL under /api/catalog/: a 404 problem rather than Django's HTML page."""

    permission_classes: list[Any] = []
    authentication_classes: list[Any] = []
    schema = None  # a catch-all, not an operation

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"Unknown URL: {request.method} {request.path}")

    post = put = patch = delete = options = get
