"""Secrets at rest (hub tokens, provider credentials): Fernet tokens under a rotatable key list.

Keys come from ``MLXHUB_ENCRYPTION_KEYS`` (comma-separated, newest first); when
unset, one key is generated once into ``MLXHUB_HOME/encryption_key`` (mode 0600).
Encryption always uses the newest key; decryption tries every key, so adding a
new key in front and running ``rotate`` over the stored tokens retires an old one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

KEY_FILE_NAME = "encryption_key"


class DecryptionError(Exception):
    """The token was not made by any configured key, or it was altered."""


def _key_file() -> Path:
    return Path(settings.MLXHUB_HOME) / KEY_FILE_NAME


def _generated_key() -> bytes:
    key_file = _key_file()
    if not key_file.exists():
        # O_EXCL: a web process and a worker starting together must not write two different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    return key_file.read_bytes().strip()


@functools.cache
def _fernet() -> MultiFernet:
    configured = [key.strip() for key in getattr(settings, "MLXHUB_ENCRYPTION_KEYS", []) if key.strip()]
    raw_keys = [key.encode() for key in configured] or [_generated_key()]
    try:
        return MultiFernet([Fernet(key) for key in raw_keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "MLXHUB_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys of 32 bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        ) from exc


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: Any) -> None:
    if setting in {"MLXHUB_ENCRYPTION_KEYS", "MLXHUB_HOME"}:
        _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("The secret cannot be decrypted with the configured encryption keys.") from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key (after a new key was put first in MLXHUB_ENCRYPTION_KEYS)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("The secret cannot be decrypted with the configured encryption keys.") from exc
