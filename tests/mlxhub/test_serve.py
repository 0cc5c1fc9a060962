"""`manage.py serve`, as `make run` starts it: serves, logs in, and stops with its children."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LIVE_ADMIN_PASSWORD, LIVE_API_KEY, REPO, free_port, hub_env, wait_ready

pytestmark = pytest.mark.live

STOP_SECONDS = 20


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: the fields after it start at the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process below ``root``, as pid -> start time (so a reused pid is not mistaken for it)."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] != "Z":
            parents[int(entry.name)] = (stat[1], stat[2])
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def still_running(processes: dict[int, int]) -> list[int]:
    alive = []
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and stat[2] == started:
            alive.append(pid)
    return alive


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def wait_for_children(pid: int, names: tuple[str, ...], timeout: float = 60) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        found = descendants(pid)
        lines = [command_line(child) for child in found]
        if all(any(name in line for line in lines) for name in names) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_launcher_serves_the_api_and_admin_and_stops_with_its_children(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "hub"
    # The demo model bootstrap would build is already in place, so the launcher only registers it.
    shutil.copytree(tiny_model_dir, home / "models" / "mlxhub-demo-tiny")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=REPO, env=hub_env(home), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    children: dict[int, int] = {}
    try:
        wait_ready(base_url, launcher, log_path)
        children = wait_for_children(launcher.pid, ("mlxhub.web", "celery"))
        child_commands = " | ".join(command_line(pid) for pid in children)
        assert "mlxhub.web" in child_commands, child_commands
        assert "celery" in child_commands, child_commands

        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=LIVE_API_KEY)
        assert "demo" in [model.id for model in client.models.list()]

        with httpx.Client(base_url=base_url, timeout=30) as browser:
            login_page = browser.get("/admin/login/?next=/admin/")
            assert login_page.status_code == 200, login_page.text[-2000:]
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
            assert token, login_page.text[-2000:]
            logged_in = browser.post(
                "/admin/login/?next=/admin/",
                data={"csrfmiddlewaretoken": token.group(1), "username": "admin", "password": LIVE_ADMIN_PASSWORD,
                      "next": "/admin/"},
            )  # fmt: skip
            assert logged_in.status_code == 302, logged_in.text[-2000:]
            assert logged_in.headers["location"] == "/admin/"
            site = browser.get("/admin/")
            assert site.status_code == 200
            assert "Site administration" in site.text

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=STOP_SECONDS) == 0, log_path.read_text()[-4000:]

        assert still_running(children) == [], [command_line(pid) for pid in still_running(children)]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base_url}/healthz", timeout=2)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in still_running(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
