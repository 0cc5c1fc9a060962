"""Bootstrap, then run the web process (daphne, ``mlxhub.web``) and one Celery worker as children that stop
together.

SIGTERM/SIGINT reach both children as SIGTERM: the web process drains (``MLXHUB_DRAIN_SECONDS``), the worker
makes Celery's warm shutdown (it finishes the task it runs). A web process that exits with
``ENGINE_DIED_EXIT_CODE`` (its engine thread died) is started again, up to ``MAX_RESTARTS`` times in
``RESTART_WINDOW_SECONDS``; any other exit of a child stops MLX Hub with that child's code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlxhub.kernels import BlasUnavailable, engine_process_env
from mlxhub.lifecycle import ENGINE_DIED_EXIT_CODE

# Children get the drain plus this long to exit after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 10
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 300


class Command(BaseCommand):
    help = "Run MLX Hub: bootstrap, daphne on MLXHUB_HOST:MLXHUB_PORT and a Celery worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.MLXHUB_HOST)
        parser.add_argument("--port", type=int, default=settings.MLXHUB_PORT)
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            # The web process hosts the engine: it starts with the BLAS preload its kernel path needs.
            child_env = engine_process_env({**os.environ, "MLXHUB_ENGINE_PRELOAD": "1"})
        except BlasUnavailable as exc:
            raise CommandError(str(exc)) from exc
        call_command("bootstrap", stdout=self.stdout)
        call_command("collectstatic", interactive=False, verbosity=0)
        python = sys.executable
        commands = {
            "web": [
                python,
                "-m",
                "mlxhub.web",
                "-b",
                options["host"],
                "-p",
                str(options["port"]),
                "mlxhub.asgi:application",
            ],
        }
        if not options["no_worker"]:
            commands["worker"] = [
                python,
                "-m",
                "celery",
                "-A",
                "mlxhub",
                "worker",
                "--loglevel=INFO",
                "--concurrency=1",
                "--hostname=mlxhub@%h",
                # Embedded beat runs the periodic jobs (audit retention) with no extra process.
                "--beat",
                f"--schedule={settings.MLXHUB_HOME / 'celerybeat-schedule'}",
            ]
        worker_env = {**os.environ, "MLXHUB_ENGINE_PRELOAD": "0"}
        envs = {"web": child_env, "worker": worker_env}

        def start(name: str) -> subprocess.Popen[bytes]:
            # Their own process group: a terminal's Ctrl-C reaches this launcher only, which stops each child
            # once with SIGTERM (a second signal would cut the web drain short, and make Celery's shutdown cold).
            return subprocess.Popen(commands[name], env=envs[name], process_group=0)

        children = {name: start(name) for name in commands}
        restarts: list[float] = []
        self.stdout.write(f"MLX Hub on http://{options['host']}:{options['port']}/ (pages, /admin/, /v1/)")
        preloaded = child_env.get("LD_PRELOAD", "")
        self.stdout.write(
            f"CPU kernels: {settings.MLXHUB_CPU_KERNELS}" + (f", preloading {preloaded}" if preloaded else "")
        )
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is None or stopping:
                    continue
                now = time.monotonic()
                restarts = [when for when in restarts if now - when < RESTART_WINDOW_SECONDS]
                if name == "web" and child.returncode == ENGINE_DIED_EXIT_CODE and len(restarts) < MAX_RESTARTS:
                    self.stderr.write(f"web exited with {child.returncode} (its engine died); starting it again.")
                    restarts.append(now)
                    children[name] = start(name)
                else:
                    self.stderr.write(f"{name} exited with {child.returncode}; stopping MLX Hub.")
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.MLXHUB_DRAIN_SECONDS + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"a child (pid {child.pid}) did not stop in time; killing it.")
                child.kill()
                child.wait()
                exit_code = exit_code or 1
            if child.returncode:  # a drain or a warm shutdown ends with 0; anything else is worth saying
                self.stderr.write(f"a child (pid {child.pid}) exited with {child.returncode} while stopping.")
                exit_code = exit_code or 1
        if exit_code:
            sys.exit(exit_code)
