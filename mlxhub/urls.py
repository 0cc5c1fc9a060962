from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from audit.api import AuditLogView, UsageView, metrics_view
from catalog.api import ModelLoadView, ModelUnloadView, ProfileViewSet
from inference.api import api as v1_api
from inference.api import unknown_url as v1_unknown_url
from mlxhub import schema  # noqa: F401  (registers the API key's security scheme with drf-spectacular)
from mlxhub.accounts.api import ApiKeyViewSet, TeamViewSet
from mlxhub.health import healthz, readyz

# The admin is MLX Hub's too: its header says so, and "View site" leads back to the pages.
admin.site.site_header = "MLX Hub"
admin.site.site_title = "MLX Hub admin"
admin.site.site_url = "/"

router = DefaultRouter()
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("teams", TeamViewSet, basename="team")
router.register("profiles", ProfileViewSet, basename="profile")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/catalog/", include("catalog.urls")),
    path("api/routing/", include("routing.urls")),
    path("api/audit/", AuditLogView.as_view(), name="audit-list"),
    path("api/usage/", UsageView.as_view(), name="usage"),
    # {name} is a profile, as clients send it in `model`; the trailing slash is optional.
    re_path(r"^api/models/(?P<name>[-a-zA-Z0-9_]+)/load/?$", ModelLoadView.as_view(), name="model-load"),
    re_path(r"^api/models/(?P<name>[-a-zA-Z0-9_]+)/unload/?$", ModelUnloadView.as_view(), name="model-unload"),
    *([path("api/schema/", SpectacularAPIView.as_view(), name="api-schema")] if settings.MLXHUB_API_DOCS else []),
    path("api/", include(router.urls)),
    path("metrics", metrics_view, name="metrics"),
    path("v1/", v1_api.urls),
    re_path(r"^v1/.*$", v1_unknown_url),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # The pages for people: /, /login/, /models/, /discover/, /downloads/, /playground/, /keys/, /usage/ …
    path("", include("mlxhub.page_urls")),
]
