"""`manage.py bootstrap` in a fresh MLXHUB_HOME: secrets printed once, nothing made twice."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.conftest import LIVE_ADMIN_PASSWORD, LIVE_API_KEY, REPO
from tests.mlxhub.processes import clean_env, manage

ADMIN_LINE = re.compile(r"Admin login:\s+admin / (\S+)")
API_KEY_LINE = re.compile(r"API key:\s+(mlxh-\S+)")
COUNTED_TABLES = (
    "auth_user",
    "accounts_team",
    "accounts_membership",
    "accounts_apikey",
    "catalog_localmodel",
    "catalog_profile",
)


@dataclass
class Bootstrapped:
    home: Path
    env: dict[str, str]
    first_run: subprocess.CompletedProcess[str]

    def query(self, sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.home / "db.sqlite3") as database:
            return database.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        return {table: self.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in COUNTED_TABLES}  # noqa: S608

    def admin_password_hash(self) -> str:
        return self.query("SELECT password FROM auth_user WHERE username = 'admin'")[0][0]

    def key_hashes(self) -> set[str]:
        return {row[0] for row in self.query("SELECT hashed_key FROM accounts_apikey WHERE revoked_at IS NULL")}


def check_password(password: str, encoded: str) -> bool:
    # The hub hashes with its own settings (PBKDF2), whatever hasher this test process is set to.
    return PBKDF2PasswordHasher().verify(password, encoded)


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Bootstrapped]:
    """Two fresh hubs bootstrapped side by side: one generates its secrets, one is given them."""
    generated_home = tmp_path_factory.mktemp("bootstrap-generated")
    chosen_home = tmp_path_factory.mktemp("bootstrap-chosen")
    # The demo model is already in place for the second hub: its tests are about secrets, not building models.
    shutil.copytree(tiny_model_dir, chosen_home / "models" / "mlxhub-demo-tiny")
    envs = {
        "generated": clean_env(generated_home, MLXHUB_DEMO_PRESET="tiny"),
        "chosen": clean_env(
            chosen_home,
            MLXHUB_DEMO_PRESET="tiny",
            MLXHUB_API_KEY=LIVE_API_KEY,
            MLXHUB_ADMIN_PASSWORD=LIVE_ADMIN_PASSWORD,
        ),
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "manage.py", "bootstrap"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in envs.items()
    }
    hubs = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stdout + stderr
        run = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        hubs[name] = Bootstrapped(Path(envs[name]["MLXHUB_HOME"]), envs[name], run)
    return hubs


@pytest.fixture
def generated(first_runs: dict[str, Bootstrapped]) -> Bootstrapped:
    """A hub bootstrapped with no MLXHUB_API_KEY or MLXHUB_ADMIN_PASSWORD: both are generated."""
    return first_runs["generated"]


@pytest.fixture
def chosen(first_runs: dict[str, Bootstrapped]) -> Bootstrapped:
    """A hub bootstrapped with the key and the password given in the environment."""
    return first_runs["chosen"]


def test_the_first_run_prints_a_working_admin_password_and_api_key_once(generated):
    output = generated.first_run.stdout
    password = ADMIN_LINE.search(output)
    api_key = API_KEY_LINE.search(output)

    assert password, output
    assert api_key, output
    assert output.count(password.group(1)) == 1
    assert output.count(api_key.group(1)) == 1
    assert check_password(password.group(1), generated.admin_password_hash())
    assert generated.key_hashes() == {hashlib.sha256(api_key.group(1).encode()).hexdigest()}


def test_the_first_run_makes_the_admin_team_key_and_demo_profile(generated):
    assert generated.counts() == {
        "auth_user": 1,
        "accounts_team": 1,
        "accounts_membership": 1,
        "accounts_apikey": 1,
        "catalog_localmodel": 1,
        "catalog_profile": 1,
    }
    assert generated.query("SELECT name, pinned, enabled FROM catalog_profile") == [("demo", 1, 1)]
    assert (generated.home / "models" / "mlxhub-demo-tiny" / "config.json").is_file()


def test_a_second_run_prints_no_secret_and_makes_nothing_new(generated):
    counts_before = generated.counts()
    password_hash = generated.admin_password_hash()

    second = manage(generated.env, "bootstrap", timeout=300)

    assert second.returncode == 0, second.stderr
    assert "Admin login" not in second.stdout
    assert "API key" not in second.stdout
    assert "mlxh-" not in second.stdout + second.stderr
    assert "created" not in second.stdout
    assert generated.counts() == counts_before
    assert generated.admin_password_hash() == password_hash


def test_the_admin_renders_on_a_bootstrapped_hub_without_a_separate_collectstatic(generated):
    # daphne started right after bootstrap (as tests/conftest.py's live_hub does) must serve the admin.
    render = (
        "from django.test import Client;"
        "response = Client(raise_request_exception=False).get('/admin/login/');"
        "print(response.status_code)"
    )

    result = manage(generated.env, "shell", "-c", render)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "200", result.stdout + result.stderr[-2000:]


def test_keys_and_passwords_from_the_environment_are_used_and_never_printed(chosen):
    output = chosen.first_run.stdout + chosen.first_run.stderr

    assert LIVE_API_KEY not in output
    assert LIVE_ADMIN_PASSWORD not in output
    assert not ADMIN_LINE.search(output)
    assert not API_KEY_LINE.search(output)
    assert "created API key from MLXHUB_API_KEY" in output
    assert check_password(LIVE_ADMIN_PASSWORD, chosen.admin_password_hash())
    assert hashlib.sha256(LIVE_API_KEY.encode()).hexdigest() in chosen.key_hashes()
    assert chosen.query("SELECT name FROM accounts_apikey WHERE name = 'bootstrap'") == []


def test_a_rotated_mlxhub_api_key_is_honoured_on_the_next_run(chosen):
    # Operators rotate a key by changing the variable; a key of their own choosing may share its first 12 characters.
    rotated = LIVE_API_KEY[:12] + "rotated-0123456789abcdefghijklmnopqrstu"
    env = {**chosen.env, "MLXHUB_API_KEY": rotated}

    result = manage(env, "bootstrap", timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert rotated not in result.stdout + result.stderr
    assert hashlib.sha256(rotated.encode()).hexdigest() in chosen.key_hashes()
