"""manage.py user_add USERNAME --team TEAM --role admin|member|viewer [--password P]: a user who can sign in."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from mlxhub.accounts.models import Role, Team
from mlxhub.accounts.services import AccountError, team_create, user_create


class Command(BaseCommand):
    help = "Create a user with a role in a team (the team is created if it does not exist)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", required=True, help="The team's name or slug.")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--password", help="Omit to have one generated and printed once.")
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true", help="Also give access to the Django admin.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["team"].strip()
        if not name:
            raise CommandError("--team needs a name.")
        try:
            with transaction.atomic():
                team = Team.objects.filter(Q(slug=name) | Q(name__iexact=name)).first()
                if team is None:
                    team = team_create(name=name, slug=slugify(name) or "team", actor=None)
                    self.stdout.write(f"created team {team.name!r}")
                created = user_create(
                    username=options["username"],
                    team=team,
                    role=options["role"],
                    password=options["password"],
                    email=options["email"],
                    superuser=options["superuser"],
                )
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"created user {created.user.username!r}: {options['role']} in {team.name!r}")
        if created.password is not None:
            # Printed once: only its hash is kept.
            self.stdout.write(f"Password: {created.password}")
            self.stdout.write("Save it now: it is not shown again. Sign in at /login/.")
