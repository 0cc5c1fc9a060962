"""The Hugging Face token for gated and private repositories, encrypted at rest (mlxhub.crypto)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from audit.models import AdminAction
from audit.services import admin_action_record
from catalog.models import HubToken
from mlxhub import crypto


def hub_token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a hub token, or None. It travels in an HTTP header, so printable ASCII only:
    anything else would fail every later hub request, not this one."""
    if not token:
        return "The token is empty."
    if not (token.isascii() and token.isprintable()) or " " in token or len(token) > 1000:
        return "A hub token is printable ASCII with no spaces (hf_…)."
    return None


@transaction.atomic
def hub_token_set(*, token: str, actor: User | None = None) -> HubToken:
    """Store the token encrypted; nothing shows it again (the audit row says only that it changed)."""
    token = token.strip()
    if problem := hub_token_problem(token):
        raise ValueError(problem)
    row, created = HubToken.objects.update_or_create(
        pk=HubToken.SINGLETON_ID,
        defaults={"encrypted_token": crypto.encrypt(token), "updated_by": actor},
    )
    action = AdminAction.Action.CREATED if created else AdminAction.Action.CHANGED
    admin_action_record(actor=actor, action=action, obj=row)
    return row


@transaction.atomic
def hub_token_clear(*, actor: User | None = None) -> None:
    row = HubToken.objects.filter(pk=HubToken.SINGLETON_ID).first()
    if row is not None:
        admin_action_record(actor=actor, action=AdminAction.Action.DELETED, obj=row)
        row.delete()
