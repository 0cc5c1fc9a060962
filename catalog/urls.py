"""/api/catalog/: hub search and details, downloads, local models, the hub token."""

from __future__ import annotations

from django.urls import path, re_path

from catalog import api

app_name = "catalog-api"

urlpatterns = [
    path("search/", api.HubSearchView.as_view(), name="search"),
    # Repository ids hold a slash (owner/name): the path converter keeps it.
    path("models/<path:repo_id>/", api.HubModelView.as_view(), name="model"),
    path("downloads/", api.DownloadListView.as_view(), name="downloads"),
    path("downloads/<int:pk>/", api.DownloadDetailView.as_view(), name="download"),
    *(
        path(
            f"downloads/<int:pk>/{action}/",
            api.DownloadActionView.as_view(),
            {"action": action},
            name=f"download-{action}",
        )
        for action in api.DownloadActionView.actions
    ),
    path("local/", api.LocalModelListView.as_view(), name="local"),
    path("local/<int:pk>/", api.LocalModelDetailView.as_view(), name="local-model"),
    path("token/", api.HubTokenView.as_view(), name="token"),
    re_path(r"^.*$", api.UnknownUrlView.as_view()),
]
