"""The command's side of the engine-alone contender: its resident process, started, fed runs and stopped.

The process runs ``inference.bench.engine_alone`` (its docstring says what it measures) in the hub's
kernel environment; this side imports no engine and no MLX.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.bench.common import BenchError, BenchPlan
from inference.bench.constants import READY_TIMEOUT_S, RUN_BUDGET_SLACK_S, STOP_GRACE_S


class EngineAlone:
    """The command's handle on the resident process: one run per line it writes, one line of figures back."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        # A reader thread, so a process that hangs or dies ends as a BenchError after a budget, never a hang.
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name="engine-alone-reader", daemon=True).start()
        self.kernel: dict[str, Any] = self._answer(READY_TIMEOUT_S, "loading the engine-alone model")["kernel"]

    def run(
        self, *, concurrency: int, seed: int, plan: BenchPlan, logit_bias: Mapping[int, float] | None = None
    ) -> dict[str, Any]:
        """One run's figures: loadgen's keys, plus the process's CPU seconds over it and its kernel path."""
        job = {
            "concurrency": concurrency,
            "requests": plan.requests,
            "prompt_words": plan.prompt_words,
            "max_tokens": plan.max_tokens,
            "warmup": plan.warmup,
            "seed": seed,
            "timeout": plan.timeout,
            "logit_bias": {str(token): bias for token, bias in (logit_bias or {}).items()},
        }
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        except OSError as exc:
            raise BenchError(f"the engine-alone process is gone ({exc}):\n{self.log_tail()}") from exc
        budget = plan.timeout * (plan.requests + plan.warmup) + RUN_BUDGET_SLACK_S
        figures = self._answer(budget, f"the engine-alone run at c={concurrency}")
        figures["kernel"] = self.kernel
        return figures

    def close(self) -> None:
        """End of input: the process stops its engine and exits; killed if it does not within the grace."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):  # already gone: only the wait below matters
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self._lines.put(line)
        self._lines.put(None)

    def _answer(self, budget: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=budget)
        except queue.Empty:
            raise BenchError(f"{what} took more than {budget:.0f}s:\n{self.log_tail()}") from None
        if line is None:
            raise BenchError(f"the engine-alone process exited with {self.process.wait()}:\n{self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextmanager
def engine_alone_running(
    *,
    repo: Path,
    hub_env: Mapping[str, str],
    loadgen_dir: Path,
    model_dir: Path,
    engine_config: Mapping[str, Any],
    log_path: Path,
) -> Iterator[EngineAlone]:
    """The resident process up with its model loaded, always stopped on the way out."""
    setup = {"model_dir": str(model_dir), "loadgen_dir": str(loadgen_dir), "engine_config": dict(engine_config)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference.bench.engine_alone", json.dumps(setup)],
            cwd=repo,
            env=dict(hub_env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        alone = EngineAlone(process, log_path)
    except BaseException:
        process.kill()
        process.wait()
        raise
    try:
        yield alone
    finally:
        alone.close()
