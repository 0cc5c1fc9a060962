"""Re-encrypt every provider secret (and the hub token) under the newest key of MLXHUB_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mlxhub.crypto import DecryptionError
from routing.services import credentials_rotate_encryption


class Command(BaseCommand):
    help = "Re-encrypt every stored provider secret under the newest encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = credentials_rotate_encryption()
        except DecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed; add the old key back after the new one.") from exc
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} provider secret(s) under the newest key."))
