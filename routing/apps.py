from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receivers that drop the rule cache when a rule, credential or profile changes,
        # in every process (a Celery worker or `manage.py shell` writes rules without importing the admin).
        from routing import selectors  # noqa: F401
