from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from routing.api import CredentialViewSet, ResolveView, RuleViewSet

router = SimpleRouter()
router.register("credentials", CredentialViewSet, basename="routing-credential")
router.register("rules", RuleViewSet, basename="routing-rule")

urlpatterns = [path("resolve/", ResolveView.as_view(), name="routing-resolve"), *router.urls]
