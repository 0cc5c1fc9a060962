"""Secrets at rest (mlxhub.crypto) and the Hugging Face token that uses them."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from catalog.models import HubToken
from catalog.selectors import hub_token_is_set, hub_token_value
from catalog.services import hub_token_clear, hub_token_set
from mlxhub import crypto

SECRET = "hf_test_0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
def home(settings, tmp_path):
    settings.MLXHUB_HOME = tmp_path
    settings.MLXHUB_ENCRYPTION_KEYS = []
    return tmp_path


def test_without_configured_keys_one_key_is_generated_once_with_mode_0600(home):
    token = crypto.encrypt(SECRET)

    key_file = home / crypto.KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    assert crypto.encrypt("again") and key_file.read_bytes() == key
    assert SECRET not in token and crypto.decrypt(token) == SECRET
    assert Fernet(key).decrypt(token.encode()).decode() == SECRET


def test_configured_keys_are_used_and_no_key_file_is_written(home, settings):
    key = Fernet.generate_key().decode()
    settings.MLXHUB_ENCRYPTION_KEYS = [key]

    token = crypto.encrypt(SECRET)

    assert Fernet(key.encode()).decrypt(token.encode()).decode() == SECRET
    assert not (home / crypto.KEY_FILE_NAME).exists()


def test_a_new_key_in_front_decrypts_old_tokens_and_rotation_retires_the_old_key(home, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MLXHUB_ENCRYPTION_KEYS = [old]
    token = crypto.encrypt(SECRET)

    settings.MLXHUB_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt(token) == SECRET
    rotated = crypto.rotate(token)

    settings.MLXHUB_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt(rotated) == SECRET
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_a_malformed_key_is_refused_loudly(home, settings):
    settings.MLXHUB_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    with pytest.raises(ImproperlyConfigured, match="MLXHUB_ENCRYPTION_KEYS"):
        crypto.encrypt(SECRET)


def test_the_hub_token_is_kept_encrypted_in_one_row(db, home):
    hub_token_set(token=f"  {SECRET}\n")
    hub_token_set(token=SECRET + "x")

    (row,) = HubToken.objects.all()
    assert SECRET not in row.encrypted_token and SECRET not in str(row)
    assert hub_token_value() == SECRET + "x"
    hub_token_clear()
    assert not hub_token_is_set() and hub_token_value() is None


def test_an_empty_token_is_refused(db, home):
    with pytest.raises(ValueError, match="empty"):
        hub_token_set(token="   ")
    assert not hub_token_is_set()
