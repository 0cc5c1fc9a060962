"""The pages for people, in one list: these URLs are fixed (documentation and tests rely on them)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from audit.views import usage_page
from catalog.views import discover, downloads, models, playground
from mlxhub import views as overview
from mlxhub.accounts import views as accounts
from routing import views as routing

urlpatterns = [
    # Sign-in for every role (Django's views and form: username, password).
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    # /
    path("", overview.overview, name="overview"),
    path("overview/health/", overview.overview_health, name="overview-health"),
    # /models/
    path("models/", models.models_page, name="models"),
    path("models/profiles/", models.profile_create, name="profile-create"),
    path("models/profiles/<slug:name>/", models.profile_detail, name="profile-detail"),
    path("models/profiles/<slug:name>/save/", models.profile_update, name="profile-update"),
    path("models/profiles/<slug:name>/delete/", models.profile_remove, name="profile-delete"),
    path("models/profiles/<slug:name>/load/", models.profile_load_view, name="profile-load"),
    path("models/profiles/<slug:name>/unload/", models.profile_unload_view, name="profile-unload"),
    path("models/profiles/<slug:name>/pin/", models.profile_pin_view, name="profile-pin"),
    # /discover/ (repository ids hold a slash: the path converter keeps it)
    path("discover/", discover.discover_page, name="discover"),
    path("discover/<path:repo_id>/", discover.hub_model_page, name="hub-model"),
    # /downloads/
    path("downloads/", downloads.downloads_page, name="downloads"),
    path("downloads/start/", downloads.download_start_page, name="download-start"),
    path("downloads/<int:pk>/", downloads.download_row, name="download"),
    path("downloads/<int:pk>/<str:action>/", downloads.download_act, name="download-act"),
    # /playground/
    path("playground/", playground.playground_page, name="playground"),
    # /keys/
    path("keys/", accounts.keys_page, name="keys"),
    path("keys/create/", accounts.key_create, name="key-create"),
    path("keys/<int:pk>/", accounts.key_detail, name="key-detail"),
    path("keys/<int:pk>/edit/", accounts.key_edit, name="key-edit"),
    path("keys/<int:pk>/limits/", accounts.key_limits, name="key-limits"),
    path("keys/<int:pk>/revoke/", accounts.key_revoke, name="key-revoke"),
    # /usage/
    path("usage/", usage_page, name="usage"),
    # /team/
    path("team/", accounts.team_page, name="team"),
    path("team/log/", accounts.team_log, name="team-log"),
    path("team/add/", accounts.team_add_user, name="team-add"),
    path("team/members/<int:pk>/role/", accounts.member_role, name="member-role"),
    path("team/members/<int:pk>/active/", accounts.member_active, name="member-active"),
    # /routing/ (admins)
    path("routing/", routing.routing_page, name="routing"),
    path("routing/resolve/", routing.routing_resolve, name="routing-resolve"),
    path("routing/credentials/", routing.credential_add, name="credential-add"),
    path("routing/credentials/<int:pk>/test/", routing.credential_check, name="credential-test"),
]
