"""Routing writes: provider credentials (and their rotation), routing rules; each with its admin-action row."""

from __future__ import annotations

from typing import Any

import httpx
from django.contrib.auth.models import User
from django.db import transaction

from audit.models import AdminAction
from audit.services import admin_action_record
from mlxhub import crypto
from routing.constants import ANTHROPIC_VERSION, UPSTREAM_CONNECT_TIMEOUT
from routing.models import ProviderCredential
from routing.selectors import CredentialTarget


# Credentials.
@transaction.atomic
def credential_create(
    *, name: str, provider: str, secret: str, base_url: str = "", actor: User | None = None
) -> ProviderCredential:
    credential = ProviderCredential(name=name, provider=provider, base_url=base_url)
    credential.full_clean(exclude=["encrypted_secret", "secret_last_four"])
    _set_secret(credential, secret)
    credential.save()
    admin_action_record(actor=actor, action=AdminAction.Action.CREATED, obj=credential, changes={"provider": provider})
    return credential


@transaction.atomic
def credential_update(
    *, credential: ProviderCredential, actor: User | None = None, secret: str | None = None, **fields: Any
) -> ProviderCredential:
    for name, value in fields.items():
        setattr(credential, name, value)
    credential.full_clean(exclude=["encrypted_secret", "secret_last_four"])
    if secret:
        _set_secret(credential, secret)
    credential.save()
    changes = {**{name: str(value) for name, value in fields.items()}, **({"secret": "changed"} if secret else {})}
    admin_action_record(actor=actor, action=AdminAction.Action.CHANGED, obj=credential, changes=changes)
    return credential


def _set_secret(credential: ProviderCredential, secret: str) -> None:
    credential.encrypted_secret = crypto.encrypt(secret)
    credential.secret_last_four = secret[-4:] if len(secret) >= 8 else ""


def credential_secret(credential: ProviderCredential | CredentialTarget) -> str:
    """The plaintext, for the Authorization header of an upstream request only."""
    return crypto.decrypt(credential.encrypted_secret)


@transaction.atomic
def credentials_rotate_encryption() -> int:
    """Re-encrypt every stored secret under the newest key; returns how many."""
    count = 0
    for credential in ProviderCredential.objects.select_for_update().only("pk", "encrypted_secret"):
        credential.encrypted_secret = crypto.rotate(credential.encrypted_secret)
        credential.save(update_fields=["encrypted_secret"])
        count += 1
    return count


def credential_test(*, credential: ProviderCredential) -> tuple[bool, str]:
    """List the provider's models with the stored secret: (accepted, a short message that never holds it)."""
    secret = credential_secret(credential)
    if credential.speaks_anthropic:
        url = f"{credential.effective_base_url}/v1/models"
        headers = {"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION}
    else:
        url = f"{credential.effective_base_url}/models"
        headers = {"Authorization": f"Bearer {secret}"}
    try:
        response = httpx.get(url, headers=headers, timeout=UPSTREAM_CONNECT_TIMEOUT * 2)
    except httpx.HTTPError as exc:
        return False, f"{credential.name}: could not connect ({type(exc).__name__})."
    if response.status_code >= 400:
        return False, f"{credential.name}: the provider answered {response.status_code}."
    return True, f"{credential.name}: connected ({response.status_code})."
