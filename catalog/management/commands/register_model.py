from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.services import ModelFolderError, local_model_register, profile_upsert


class Command(BaseCommand):
    help = "Register a model folder in the Hugging Face layout and serve it under NAME (no restart needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--name", required=True, help="The model name clients send.")
        parser.add_argument("--pinned", action="store_true", help="Load at start and never evict.")
        parser.add_argument("--max-tokens", type=int, default=None, help="Default max_tokens for this profile.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            local_model = local_model_register(path=options["path"])
        except ModelFolderError as exc:
            raise CommandError(str(exc)) from exc
        profile = profile_upsert(
            name=options["name"],
            local_model=local_model,
            pinned=options["pinned"],
            default_max_tokens=options["max_tokens"],
        )
        self.stdout.write(f"Serving {local_model.path} as '{profile.name}'.")
