"""Settings come from the environment: deploy checks, the generated secret key, loud failures."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from django.core.checks import Tags, run_checks

from tests.conftest import REPO
from tests.mlxhub.processes import SHOW_SETTINGS, clean_env, python

SECURE_DEPLOY = {"MLXHUB_SECURE": "1", "MLXHUB_DEBUG": "0", "MLXHUB_ALLOWED_HOSTS": "hub.example.com"}


@pytest.fixture(scope="module")
def deploy_checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """`manage.py check --deploy` for a secure deploy and for one with a wildcard host, run side by side."""
    cases = {"secure": SECURE_DEPLOY, "wildcard": {**SECURE_DEPLOY, "MLXHUB_ALLOWED_HOSTS": "*"}}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "manage.py", "check", "--deploy"],
            cwd=REPO,
            env=clean_env(tmp_path_factory.mktemp(name), **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in cases.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def test_a_secure_deploy_passes_check_deploy_without_warnings(deploy_checks):
    result = deploy_checks["secure"]

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_a_wildcard_allowed_host_fails_check_deploy_with_e001(deploy_checks):
    result = deploy_checks["wildcard"]

    assert result.returncode != 0
    assert "mlxhub.E001" in result.stderr


def _mlxhub_check_ids() -> set[str]:
    messages = run_checks(tags=[Tags.security], include_deployment_checks=True)
    return {message.id for message in messages if message.id and message.id.startswith("mlxhub.")}


def test_the_host_check_refuses_a_wildcard_only_when_debug_is_off(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.DEBUG = False
    assert "mlxhub.E001" in _mlxhub_check_ids()

    settings.DEBUG = True
    assert "mlxhub.E001" not in _mlxhub_check_ids()


def test_the_secret_key_check_refuses_a_short_key(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "too-short"
    assert "mlxhub.E002" in _mlxhub_check_ids()

    settings.SECRET_KEY = "x" * 60
    assert "mlxhub.E002" not in _mlxhub_check_ids()


def test_the_secret_key_is_generated_once_into_the_home_with_mode_0600(tmp_path):
    env = clean_env(tmp_path)
    key_file = tmp_path / "secret_key"
    assert not key_file.exists()

    first = python(env, SHOW_SETTINGS)
    second = python(env, SHOW_SETTINGS)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    first_key = first.stdout.splitlines()[0]
    assert len(first_key) >= 50
    assert second.stdout.splitlines()[0] == first_key
    assert key_file.read_text().strip() == first_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_secret_key_and_port_from_the_environment_are_used_and_no_key_file_is_written(tmp_path):
    chosen = "k" * 64

    result = python(clean_env(tmp_path, MLXHUB_SECRET_KEY=chosen, MLXHUB_PORT="9001"), SHOW_SETTINGS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [chosen, "9001"]
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLXHUB_PORT", "notanumber"),
        ("MLXHUB_PORT", "70000"),
        ("MLXHUB_MAX_QUEUE", "lots"),
        ("MLXHUB_SECURE", "ture"),
        ("MLXHUB_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
        ("MLXHUB_LOGIN_FAILURE_LIMIT", "0"),
    ],
)
def test_a_malformed_setting_fails_loudly_with_improperly_configured(tmp_path, name, value):
    result = python(clean_env(tmp_path, **{name: value}), SHOW_SETTINGS)

    assert result.returncode != 0, f"{name}={value} was accepted: {result.stdout}"
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


# GETs the schema pages with Django's test client in a process of its own (the URLs are fixed at import).
SCHEMA_STATUSES = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'mlxhub.settings'; django.setup();"
    "from django.test import Client; client = Client();"
    "print(*(client.get(path).status_code for path in ('/v1/docs', '/v1/openapi.json', '/api/schema/')))"
)


@pytest.mark.parametrize(("value", "expected"), [(None, "200 200 200"), ("0", "404 404 404"), ("1", "200 200 200")])
def test_mlxhub_api_docs_switches_the_schemas_and_their_page(tmp_path, value, expected):
    extra = {"MLXHUB_ENGINE_PRELOAD": "0", **({"MLXHUB_API_DOCS": value} if value is not None else {})}
    result = python(clean_env(tmp_path, **extra), SCHEMA_STATUSES, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == expected
