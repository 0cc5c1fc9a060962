"""Run MLX Hub's own entry points in child processes with a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Prints what settings made of the environment, after Django has set up.
SHOW_SETTINGS = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'mlxhub.settings'; django.setup();"
    "from django.conf import settings; print(settings.SECRET_KEY); print(settings.MLXHUB_PORT)"
)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The inherited environment without MLX Hub's variables or a database URL, plus ``extra``."""
    stripped = {"DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLXHUB_") and key not in stripped}
    env.update({"MLXHUB_HOME": str(home), "DJANGO_SETTINGS_MODULE": "mlxhub.settings", **extra})
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def python(env: dict[str, str], code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
