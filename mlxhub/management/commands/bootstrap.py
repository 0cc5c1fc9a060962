from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mlxhub.services import ADMIN_USERNAME, bootstrap_run


class Command(BaseCommand):
    help = "Migrate, and create the admin user, an API key and the demo model if missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        result = bootstrap_run(migrate=not options["no_migrate"])
        for item in result.created:
            self.stdout.write(f"created {item}")
        if result.admin_password or result.api_key:
            # Printed once: only the hash of the key and of the password are kept.
            self.stdout.write("=" * 64)
            if result.admin_password:
                self.stdout.write(f"Admin login:  {ADMIN_USERNAME} / {result.admin_password}")
            if result.api_key:
                self.stdout.write(f"API key:      {result.api_key}")
            self.stdout.write("Save these now: they are not shown again.")
            self.stdout.write("=" * 64)
