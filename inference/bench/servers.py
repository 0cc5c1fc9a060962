"""The two servers under test: MLX Hub (daphne) and mlx_lm.server, started on free loopback ports and stopped."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bench.common import BenchError, Say
from inference.bench.constants import HUB, HUB_ENV_DROPPED, MLX, READY_TIMEOUT_S, SERVED_NAME, STOP_GRACE_S
from mlxhub.kernels import BlasUnavailable, engine_process_env


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    api_key: str | None = None
    model: str | None = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc); None where unavailable.

    Unlike wall-clock figures, CPU seconds per token hardly move when other work shares the
    machine, so they compare the two servers' efficiency even on a busy box.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_ensure(*, make_model: Path, preset: str, model_dir: Path, say: Say) -> None:
    """Make the benchmark's model with the shared make_model.py unless the folder already holds one."""
    if (model_dir / "config.json").is_file():
        return
    say(f"bench: making the '{preset}' model in {model_dir} (about a minute)")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(make_model), preset, str(model_dir)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"make_model.py failed:\n{done.stderr[-3000:]}")


def hub_kernel_env(kernels: str | None) -> dict[str, str]:
    """The environment every process on the hub's kernel path gets: this one, the setting and its BLAS preload."""
    env = dict(os.environ)
    if kernels:
        env["MLXHUB_CPU_KERNELS"] = kernels
    try:
        return engine_process_env(env)
    except BlasUnavailable as exc:
        raise BenchError(str(exc)) from exc


@contextmanager
def servers_running(
    *, repo: Path, model_dir: Path, out_dir: Path, hub_env: Mapping[str, str], with_mlx: bool, say: Say
) -> Iterator[dict[str, Server]]:
    """Both servers up (started together), always stopped on the way out."""
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="hub-home-", dir=out_dir))
    servers: dict[str, Server] = {}
    try:
        servers[HUB] = start_hub(repo=repo, home=home, log_path=logs / "hub.log", hub_env=hub_env, register=model_dir)
        if with_mlx:
            servers[MLX] = _start_mlx_lm(model_dir=model_dir, logs=logs)
        for server in servers.values():
            server_wait_ready(server)
        say("bench: " + ", ".join(f"{server.name} on {server.base_url}" for server in servers.values()))
        yield servers
    finally:
        for server in servers.values():
            server_stop(server)
        shutil.rmtree(home, ignore_errors=True)


def server_kernels(servers: Mapping[str, Server], model_dir: Path) -> dict[str, dict[str, Any]]:
    """Each server's kernel path: the hub's from its engine's model stats; mlx_lm.server's is stock."""
    hub = servers[HUB]
    request = urllib.request.Request(  # noqa: S310 (loopback)
        hub.base_url + "/v1/engine", headers={"Authorization": f"Bearer {hub.api_key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        models = json.loads(response.read())["models"]
    stats: dict[str, Any] = next((model for model in models.values() if model.get("kernel_path")), {})
    kernels = {HUB: {key: stats.get(key) for key in ("kernel_path", "blas", "weights_dtype")}}
    if MLX in servers:
        config = json.loads((model_dir / "config.json").read_text())
        checkpoint_dtype = config.get("torch_dtype") or config.get("dtype")
        kernels[MLX] = {"kernel_path": "stock", "blas": None, "weights_dtype": checkpoint_dtype}
    return kernels


def start_hub(
    *, repo: Path, home: Path, log_path: Path, hub_env: Mapping[str, str], register: Path | None = None
) -> Server:
    """A hub of its own on the embedded default, its web process as ``manage.py serve`` runs it
    (``python -m mlxhub.web``): bootstrapped in ``home``, with ``register`` served as SERVED_NAME, pinned."""
    env = {key: value for key, value in hub_env.items() if key not in HUB_ENV_DROPPED}
    api_key = "mlxh-bench-" + secrets.token_hex(16)
    env.update(
        {
            "MLXHUB_HOME": str(home),
            "MLXHUB_API_KEY": api_key,
            "MLXHUB_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "MLXHUB_DEMO_PRESET": "tiny",
            "DJANGO_SETTINGS_MODULE": "mlxhub.settings",
        }
    )
    steps = [["bootstrap"]]
    if register is not None:
        env["MLXHUB_ENGINE_PRELOAD"] = "1"
        steps.append(["register_model", str(register), "--name", SERVED_NAME, "--pinned"])
    manage = [sys.executable, str(repo / "manage.py")]
    for step in steps:
        done = subprocess.run([*manage, *step], cwd=repo, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"manage.py {step[0]} failed:\n{done.stderr[-3000:]}")
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlxhub.web", "-b", "127.0.0.1", "-p", str(port), "mlxhub.asgi:application"],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    model = SERVED_NAME if register is not None else None
    return Server(HUB, f"http://127.0.0.1:{port}", process, log_path, api_key=api_key, model=model)


def _start_mlx_lm(*, model_dir: Path, logs: Path) -> Server:
    port = free_port()
    log_path = logs / "mlx_lm_server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlx_lm",
                "server",
                "--model",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            # The stock baseline: no BLAS preload, even one this command inherited.
            env=engine_process_env({**os.environ, "MLXHUB_CPU_KERNELS": "stock"}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(MLX, f"http://127.0.0.1:{port}", process, log_path)


def server_wait_ready(server: Server) -> None:
    path = "/readyz" if server.name == HUB else "/health"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base_url + path, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    raise BenchError(f"{server.name} not ready after {READY_TIMEOUT_S}s:\n{server.log_tail()}")


def server_stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
