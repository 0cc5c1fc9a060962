"""Shared fixtures: a tiny real model built once, and a live MLX Hub server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
LIVE_API_KEY = "mlxh-live-test-key-0123456789abcdefghijklmnop"
LIVE_ADMIN_PASSWORD = "live-admin-password-1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama model with random weights and a freshly trained tokenizer, loaded by mlx_lm.load."""
    from catalog.demo_model import build_model

    return build_model(tmp_path_factory.mktemp("models") / "tiny", "tiny")


@dataclass
class LiveHub:
    base_url: str
    api_key: str
    admin_password: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60, **kwargs
        )


# The kernel path a run asks for (CI runs the inference tests once more with MLXHUB_CPU_KERNELS=stock).
KEPT_SETTINGS = ("MLXHUB_CPU_KERNELS", "MLXHUB_BLAS_LIBRARY")


def hub_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLXHUB_") or key in KEPT_SETTINGS}
    env.update(
        {
            "MLXHUB_HOME": str(home),
            "MLXHUB_DEMO_PRESET": "tiny",
            "MLXHUB_API_KEY": LIVE_API_KEY,
            "MLXHUB_ADMIN_PASSWORD": LIVE_ADMIN_PASSWORD,
            "MLXHUB_LOG_LEVEL": "INFO",
            "DJANGO_SETTINGS_MODULE": "mlxhub.settings",
        }
    )
    # The live server keeps its own SQLite database under its MLXHUB_HOME, whatever the suite uses.
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log_path.read_text()[-4000:]}")


def start_hub(home: Path, *, server: str = "daphne", **extra_env: str) -> LiveHub:
    """``server``: the module run as the web process, ``daphne`` or ``mlxhub.web`` (``serve``'s, with the drain)."""
    from mlxhub.kernels import engine_process_env

    home.mkdir(parents=True, exist_ok=True)
    # The web process hosts the engine: its environment carries the BLAS preload, as `manage.py serve` gives it.
    env = engine_process_env(hub_env(home, **extra_env))
    subprocess.run(
        [sys.executable, "manage.py", "bootstrap"], cwd=REPO, env=env, check=True, capture_output=True, timeout=300
    )
    port = free_port()
    log_path = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", server, "-b", "127.0.0.1", "-p", str(port), "mlxhub.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_ready(base_url, process, log_path)
    return LiveHub(base_url, LIVE_API_KEY, LIVE_ADMIN_PASSWORD, home, env, process, log_path)


def stop_hub(hub: LiveHub) -> None:
    hub.process.terminate()
    try:
        hub.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        hub.process.kill()
        hub.process.wait()


@pytest.fixture(scope="session")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """MLX Hub served by daphne on a free port, bootstrapped with the tiny demo model."""
    hub = start_hub(tmp_path_factory.mktemp("live-hub"))
    yield hub
    stop_hub(hub)


# ---- named users for permission cases: alice (team admin), bob (member), charlie (viewer) ----------------


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2 at production strength costs about a second per user; no test here checks hashing strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_limit_store() -> Iterator[None]:
    """Each test starts without the in-process limit store an earlier one filled: one test's counts never reach
    another, and the budget writer's thread does not go on reading a finished test's scopes from the database."""
    yield
    from mlxhub.accounts import limits

    limits._store = None


@pytest.fixture
def team(db: None) -> Any:
    from mlxhub.accounts.models import Team

    return Team.objects.create(name="Research", slug="research")


@pytest.fixture
def alice(team: Any) -> Any:
    """Team admin."""
    from mlxhub.accounts.models import Role
    from tests.mlxhub.factories import make_user

    return make_user("alice", team=team, role=Role.ADMIN)


@pytest.fixture
def bob(team: Any) -> Any:
    """Team member."""
    from mlxhub.accounts.models import Role
    from tests.mlxhub.factories import make_user

    return make_user("bob", team=team, role=Role.MEMBER)


@pytest.fixture
def charlie(team: Any) -> Any:
    """Team viewer."""
    from mlxhub.accounts.models import Role
    from tests.mlxhub.factories import make_user

    return make_user("charlie", team=team, role=Role.VIEWER)
