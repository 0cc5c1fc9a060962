from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mlxhub.accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mlxhub.accounts import keycache  # noqa: F401  (connects the signals that drop cached keys)
