from __future__ import annotations

from django.apps import AppConfig


class MlxhubConfig(AppConfig):
    name = "mlxhub"
    verbose_name = "MLX Hub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mlxhub import checks  # noqa: F401  (registers system checks)
