"""Benchmark MLX Hub against mlx_lm.server on the same local model, interleaved.

Both servers run as subprocesses on free loopback ports and share this machine,
so every figure is only meaningful as a ratio taken in the same run: for each
concurrency, the runs alternate hub / mlx_lm.server (ABBA across rounds) with
the same prompts, every prompt new to both prompt caches. The hub runs the CPU
kernel path its launcher gives it (``--kernels``, MLXHUB_CPU_KERNELS); mlx_lm.server
always runs stock. The hub's concurrency-1 prompts are also run in-process with
mlx-lm's ``stream_generate`` on the same kernel path, to measure the web tier's cost.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlxhub.kernels import CPU_KERNEL_MODES, BlasUnavailable, engine_process_env

HUB = "hub"
MLX = "mlx_lm.server"
IN_PROCESS = "in-process"  # the hub's engine path without the web tier: mlx-lm's stream_generate, one process
SERVED_NAME = "bench"
READY_TIMEOUT_S = 300
STOP_GRACE_S = 15
# The issues' figures: hub / mlx_lm.server ratios to reach, and the prefix-cache speed-up.
# On the stock kernel path the hub must match mlx_lm.server; on the optimized path, beat it by these.
TARGET_TOKS_RATIO = 1.0
TARGET_OPTIMIZED_TOKS_RATIO = {1: 2.5, 8: 4.0}
TARGET_OPTIMIZED_TTFT_P50_RATIO = {1: 0.25}
TARGET_TTFT_P95_RATIO = 1.0
TARGET_TTFT_CONCURRENCY = (4, 8)
TARGET_PREFIX_SPEEDUP = 3.0
# The web tier's cost at concurrency 1: hub tok/s at least this share of in-process stream_generate's.
TARGET_WEB_SHARE = 0.9
# Runs the hub's concurrency-1 prompts with mlx-lm in-process, on the kernel path of its environment.
IN_PROCESS_SCRIPT = """
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import mlx_lm
from mlx_lm.generate import stream_generate
from inference.engine.kernels import prepare_model
from loadgen import make_prompt
model_dir, (words, max_tokens, warmup, seed, requests) = sys.argv[3], map(int, sys.argv[4:9])
model, tokenizer = mlx_lm.load(model_dir)[:2]
kernel = prepare_model(model, path=model_dir)
def one(index):
    messages = [{"role": "user", "content": make_prompt(words, seed, index)}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    started, first, tokens = time.perf_counter(), None, 0
    for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
        first = first or time.perf_counter() - started
        tokens = response.generation_tokens
    return tokens, time.perf_counter() - started, first
cpu_started = time.process_time()
for index in range(warmup):
    one(10_000_000 + index)
runs = [one(index) for index in range(requests)]
tokens, wall = sum(run[0] for run in runs), sum(run[1] for run in runs)
ttfts = sorted(run[2] for run in runs)
print(json.dumps({"requests_ok": len(runs), "requests_failed": 0, "output_tokens": tokens, "wall_s": round(wall, 3),
                  "output_tokens_per_s": round(tokens / wall, 2), "ttft_p50_s": round(ttfts[len(ttfts) // 2], 4),
                  "ttft_p95_s": round(ttfts[-1], 4), "server_cpu_s": time.process_time() - cpu_started,
                  "kernel": kernel}))
"""
PREFIX_EXTRA_TURN = [
    {"role": "assistant", "content": "I have read all of it."},
    {"role": "user", "content": "Now say it again in five words."},
]
# Environment a benchmark must not inherit: it always measures the embedded default.
HUB_ENV_DROPPED = (
    "MLXHUB_HOME",
    "MLXHUB_API_KEY",
    "MLXHUB_ADMIN_PASSWORD",
    "MLXHUB_REDIS_URL",
    "MLXHUB_MODELS_DIR",
    "MLXHUB_ENGINE_PRELOAD",
    "DATABASE_URL",
)


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


@dataclass
class RunResult:
    server: str
    concurrency: int
    round: int
    figures: dict[str, Any]


@dataclass
class Summary:
    server: str
    concurrency: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        wall = sum(run["wall_s"] or 0 for run in self.runs)
        tokens = sum(run["output_tokens"] or 0 for run in self.runs)
        return tokens / wall if wall > 0 else None

    @property
    def cpu_ms_per_token(self) -> float | None:
        """Server CPU milliseconds per measured output token (warm-up CPU included)."""
        if any(run.get("server_cpu_s") is None for run in self.runs):
            return None
        tokens = sum(run["output_tokens"] or 0 for run in self.runs)
        return 1000 * sum(run["server_cpu_s"] for run in self.runs) / tokens if tokens else None

    def mean_of(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if run.get(key) is not None]
        return statistics.fmean(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stream_chat(server: Server, messages: list[dict[str, str]], max_tokens: int, timeout: float) -> dict[str, Any]:
    """One streamed chat completion: time to first content chunk and the usage block."""
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if server.model:
        body["model"] = server.model
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if server.api_key:
        headers["Authorization"] = f"Bearer {server.api_key}"
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    started = time.perf_counter()
    result: dict[str, Any] = {"ttft_s": None, "usage": None, "text": ""}
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise CommandError(f"{server.name} answered {response.status}: {response.read(300)!r}")
        while line := response.readline():
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            message = json.loads(payload)
            if message.get("error"):
                raise CommandError(f"{server.name} failed: {message['error']}")
            if message.get("usage"):
                result["usage"] = message["usage"]
            for choice in message.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if result["ttft_s"] is None:
                        result["ttft_s"] = time.perf_counter() - started
                    result["text"] += content
    finally:
        connection.close()
    if result["ttft_s"] is None:
        raise CommandError(f"{server.name} sent no content for the prefix-cache check")
    return result


class Command(BaseCommand):
    help = (
        "Start MLX Hub and mlx_lm.server on the same small model and run the shared loadgen.py "
        "against both, interleaved; print output tokens/s, TTFT and the hub / mlx_lm.server ratios."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        repo = Path(settings.BASE_DIR)
        parser.add_argument(
            "--shared-dir",
            type=Path,
            default=repo.parent / "shared",
            help="Folder holding bench/loadgen.py and bench/make_model.py (default: ../shared).",
        )
        parser.add_argument(
            "--out-dir",
            type=Path,
            default=repo / "bench-out",
            help="Logs, the throw-away hub data folder and the default model folder (git-ignored).",
        )
        parser.add_argument(
            "--model-dir",
            type=Path,
            default=None,
            help="Model folder; made with make_model.py when missing (default: OUT_DIR/models/PRESET).",
        )
        parser.add_argument("--preset", default="small", help="make_model.py preset (default: small).")
        parser.add_argument("--concurrency", default="1,4,8", help="Comma-separated client counts.")
        parser.add_argument("--requests", type=int, default=2, help="Measured requests per client and run.")
        parser.add_argument("--max-tokens", type=int, default=128)
        parser.add_argument("--prompt-words", type=int, default=80)
        parser.add_argument("--rounds", type=int, default=2, help="Interleaved hub / mlx_lm.server pairs per level.")
        parser.add_argument("--warmup", type=int, default=1, help="Unmeasured requests before each run.")
        parser.add_argument(
            "--prefix-words",
            type=int,
            default=900,
            help="Words in the prefix-cache check's long prompt (about 1,000 tokens); 0 skips the check.",
        )
        parser.add_argument("--timeout", type=float, default=600.0, help="Per request, seconds.")
        parser.add_argument("--skip-mlx-lm", action="store_true", help="Measure the hub alone (no ratios).")
        parser.add_argument(
            "--kernels",
            choices=CPU_KERNEL_MODES,
            default=None,
            help="The hub's MLXHUB_CPU_KERNELS (default: as in this environment, else auto); "
            "mlx_lm.server always runs stock.",
        )
        parser.add_argument("--json-out", type=Path, default=None, help="Also write the JSON result here.")

    def handle(self, *args: Any, **options: Any) -> None:
        shared_bench = Path(options["shared_dir"]).resolve() / "bench"
        loadgen = shared_bench / "loadgen.py"
        make_model = shared_bench / "make_model.py"
        for script in (loadgen, make_model):
            if not script.is_file():
                raise CommandError(f"{script} not found; pass --shared-dir")
        try:
            levels = [int(part) for part in str(options["concurrency"]).split(",") if part.strip()]
        except ValueError as exc:
            raise CommandError("--concurrency takes comma-separated integers, e.g. 1,4,8") from exc
        if not levels or min(levels) < 1 or options["requests"] < 1 or options["rounds"] < 1:
            raise CommandError("need concurrency >= 1, --requests >= 1 and --rounds >= 1")

        out_dir = Path(options["out_dir"]).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        model_dir = Path(options["model_dir"] or out_dir / "models" / options["preset"]).resolve()
        self._ensure_model(make_model, options["preset"], model_dir)

        conditions = self._conditions("start")
        self.stdout.write(
            f"bench: model {model_dir}, concurrency {levels}, {options['requests']} requests/client, "
            f"max_tokens {options['max_tokens']}, prompt {options['prompt_words']} words, "
            f"{options['rounds']} rounds; load average {conditions['loadavg_start']} on {os.cpu_count()} CPUs"
        )
        started = time.perf_counter()
        hub_env = self._hub_kernel_env(options["kernels"])
        with self._servers(model_dir, out_dir, hub_env, with_mlx=not options["skip_mlx_lm"]) as servers:
            results = self._load_runs(servers, loadgen, levels, options, hub_env, model_dir)
            kernels = self._kernels(servers, model_dir)
            prefix = (
                self._prefix_check(servers, loadgen, options["prefix_words"], options["timeout"])
                if options["prefix_words"] > 0
                else {}
            )
        conditions.update(self._conditions("end"))
        conditions["duration_s"] = round(time.perf_counter() - started, 1)
        report = self._report(results, prefix, levels, options, model_dir, conditions, kernels)
        line = json.dumps(report, separators=(",", ":"))
        self.stdout.write(line)
        if options["json_out"]:
            Path(options["json_out"]).write_text(line + "\n")

    # ---- set-up ---------------------------------------------------------------------

    def _ensure_model(self, make_model: Path, preset: str, model_dir: Path) -> None:
        if (model_dir / "config.json").is_file():
            return
        self.stdout.write(f"bench: making the '{preset}' model in {model_dir} (about a minute)")
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, str(make_model), preset, str(model_dir)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise CommandError(f"make_model.py failed:\n{done.stderr[-3000:]}")

    @staticmethod
    def _hub_kernel_env(kernels: str | None) -> dict[str, str]:
        """The environment every hub process gets: this one, the kernel setting and its BLAS preload."""
        env = dict(os.environ)
        if kernels:
            env["MLXHUB_CPU_KERNELS"] = kernels
        try:
            return engine_process_env(env)
        except BlasUnavailable as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _conditions(when: str) -> dict[str, Any]:
        return {f"loadavg_{when}": [round(value, 2) for value in os.getloadavg()], "cpus": os.cpu_count()}

    @contextmanager
    def _servers(
        self, model_dir: Path, out_dir: Path, hub_env: dict[str, str], *, with_mlx: bool
    ) -> Iterator[dict[str, Server]]:
        """Both servers up (started together), always stopped on the way out."""
        logs = out_dir / "logs"
        logs.mkdir(exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="hub-home-", dir=out_dir))
        servers: dict[str, Server] = {}
        try:
            servers[HUB] = self._start_hub(model_dir, home, logs, hub_env)
            if with_mlx:
                servers[MLX] = self._start_mlx_lm(model_dir, logs)
            for server in servers.values():
                self._wait_ready(server)
            self.stdout.write("bench: " + ", ".join(f"{s.name} on {s.base_url}" for s in servers.values()))
            yield servers
        finally:
            for server in servers.values():
                self._stop(server)
            shutil.rmtree(home, ignore_errors=True)

    def _start_hub(self, model_dir: Path, home: Path, logs: Path, hub_env: dict[str, str]) -> Server:
        repo = Path(settings.BASE_DIR)
        env = {key: value for key, value in hub_env.items() if key not in HUB_ENV_DROPPED}
        api_key = "mlxh-bench-" + secrets.token_hex(16)
        env.update(
            {
                "MLXHUB_HOME": str(home),
                "MLXHUB_API_KEY": api_key,
                "MLXHUB_ADMIN_PASSWORD": secrets.token_urlsafe(16),
                "MLXHUB_DEMO_PRESET": "tiny",
                "MLXHUB_ENGINE_PRELOAD": "1",
                "DJANGO_SETTINGS_MODULE": "mlxhub.settings",
            }
        )
        manage = [sys.executable, str(repo / "manage.py")]
        for step in (["bootstrap"], ["register_model", str(model_dir), "--name", SERVED_NAME, "--pinned"]):
            done = subprocess.run([*manage, *step], cwd=repo, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise CommandError(f"manage.py {step[0]} failed:\n{done.stderr[-3000:]}")
        port = free_port()
        log_path = logs / "hub.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mlxhub.asgi:application"],
                cwd=repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return Server(HUB, f"http://127.0.0.1:{port}", process, log_path, api_key=api_key, model=SERVED_NAME)

    def _start_mlx_lm(self, model_dir: Path, logs: Path) -> Server:
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

    def _wait_ready(self, server: Server) -> None:
        path = "/readyz" if server.name == HUB else "/health"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise CommandError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.base_url + path, timeout=2) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        raise CommandError(f"{server.name} not ready after {READY_TIMEOUT_S}s:\n{server.log_tail()}")

    @staticmethod
    def _stop(server: Server) -> None:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()

    # ---- measuring ------------------------------------------------------------------

    def _load_runs(
        self,
        servers: dict[str, Server],
        loadgen: Path,
        levels: list[int],
        options: dict[str, Any],
        hub_env: dict[str, str],
        model_dir: Path,
    ) -> list[RunResult]:
        results: list[RunResult] = []
        for level_index, concurrency in enumerate(levels):
            # At concurrency 1 the hub's engine path also runs in-process, in the same rotation: the web tier's cost.
            order = [*servers, IN_PROCESS] if concurrency == 1 else list(servers)
            for round_index in range(options["rounds"]):
                # The same prompts for every contender in a round, new ones for every round.
                seed = 1000 + 100 * level_index + round_index
                pair = order if round_index % 2 == 0 else order[::-1]
                for name in pair:
                    if name == IN_PROCESS:
                        figures = self._in_process(hub_env, loadgen, model_dir, seed, options)
                    else:
                        figures = self._loadgen(servers[name], loadgen, concurrency, seed, options)
                    results.append(RunResult(name, concurrency, round_index, figures))
                    self.stdout.write(
                        f"  c={concurrency} round {round_index + 1} {name:<14} "
                        f"{fmt(figures['output_tokens_per_s'])} tok/s  ttft p50 {fmt(figures['ttft_p50_s'])}s "
                        f"p95 {fmt(figures['ttft_p95_s'])}s  ({figures['requests_ok']} ok, "
                        f"{figures['requests_failed']} failed, {fmt(figures['wall_s'], 1)}s)"
                    )
        return results

    def _loadgen(
        self, server: Server, loadgen: Path, concurrency: int, seed: int, options: dict[str, Any]
    ) -> dict[str, Any]:
        command = [
            sys.executable,
            str(loadgen),
            "--base-url",
            server.base_url,
            "-c",
            str(concurrency),
            "-r",
            str(options["requests"]),
            "--prompt-words",
            str(options["prompt_words"]),
            "--max-tokens",
            str(options["max_tokens"]),
            "--warmup",
            str(options["warmup"]),
            "--seed",
            str(seed),
            "--timeout",
            str(options["timeout"]),
            "--label",
            server.name,
        ]
        if server.model:
            command += ["--model", server.model]
        if server.api_key:
            command += ["--api-key", server.api_key]
        budget = options["timeout"] * (options["requests"] + options["warmup"] + 1) + 60
        cpu_before = process_cpu_seconds(server.process.pid)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=budget, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandError(f"loadgen against {server.name} ran past {budget:.0f}s") from exc
        cpu_after = process_cpu_seconds(server.process.pid)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise CommandError(f"loadgen against {server.name} printed no result:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(lines[-1])
        # Includes the warm-up request, which both servers get alike.
        figures["server_cpu_s"] = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        if figures["requests_failed"]:
            self.stderr.write(f"  {server.name}: {figures['requests_failed']} requests failed: {figures.get('errors')}")
        return figures

    def _prefix_check(self, servers: dict[str, Server], loadgen: Path, words: int, timeout: float) -> dict[str, Any]:
        """A long prompt, then the same conversation plus a short extra turn: TTFT first vs second."""
        sys.path.insert(0, str(loadgen.parent))
        try:
            from loadgen import make_prompt  # type: ignore[import-not-found]
        finally:
            sys.path.remove(str(loadgen.parent))
        checks: dict[str, Any] = {}
        for index, (name, server) in enumerate(servers.items()):
            first_turn = [{"role": "user", "content": make_prompt(words, 777, index)}]
            first = stream_chat(server, first_turn, max_tokens=8, timeout=timeout)
            second = stream_chat(server, first_turn + PREFIX_EXTRA_TURN, max_tokens=8, timeout=timeout)
            usage_first, usage_second = first["usage"] or {}, second["usage"] or {}
            checks[name] = {
                "prompt_tokens": usage_first.get("prompt_tokens"),
                "second_prompt_tokens": usage_second.get("prompt_tokens"),
                "second_cached_tokens": (usage_second.get("prompt_tokens_details") or {}).get("cached_tokens"),
                "ttft_first_s": round(first["ttft_s"], 3),
                "ttft_second_s": round(second["ttft_s"], 3),
                "speedup": round(first["ttft_s"] / second["ttft_s"], 2),
            }
            self.stdout.write(
                f"  prefix {name:<14} {checks[name]['prompt_tokens']} tokens: ttft {first['ttft_s']:.2f}s, then "
                f"{second['ttft_s']:.2f}s with {checks[name]['second_cached_tokens']} cached "
                f"({checks[name]['speedup']:.1f}x)"
            )
        return checks

    @staticmethod
    def _kernels(servers: dict[str, Server], model_dir: Path) -> dict[str, dict[str, Any]]:
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

    @staticmethod
    def _in_process(
        hub_env: dict[str, str], loadgen: Path, model_dir: Path, seed: int, options: dict[str, Any]
    ) -> dict[str, Any]:
        """One client's prompts through mlx-lm's stream_generate in a fresh process on the hub's kernel path."""
        command = [
            sys.executable,
            "-c",
            IN_PROCESS_SCRIPT,
            str(settings.BASE_DIR),
            str(loadgen.parent),
            str(model_dir),
            *(str(options[key]) for key in ("prompt_words", "max_tokens", "warmup")),
            str(seed),
            str(options["requests"]),
        ]
        budget = options["timeout"] * (options["requests"] + options["warmup"]) + 120
        try:
            done = subprocess.run(command, env=hub_env, capture_output=True, text=True, timeout=budget, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandError(f"the in-process run took more than {budget:.0f}s") from exc
        if done.returncode != 0:
            raise CommandError(f"the in-process run failed:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return figures

    # ---- reporting ------------------------------------------------------------------

    @staticmethod
    def _kernel_label(kernel: dict[str, Any] | None) -> str:
        if not kernel or not kernel.get("kernel_path"):
            return "-"
        blas = f"/{kernel['blas']}" if kernel.get("blas") else ""
        return f"{kernel['kernel_path']}{blas} {kernel.get('weights_dtype') or '?'}"

    def _report(
        self,
        results: list[RunResult],
        prefix: dict[str, Any],
        levels: list[int],
        options: dict[str, Any],
        model_dir: Path,
        conditions: dict[str, Any],
        kernels: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        summaries: dict[tuple[str, int], Summary] = {}
        for result in results:
            summaries.setdefault((result.server, result.concurrency), Summary(result.server, result.concurrency))
            summaries[(result.server, result.concurrency)].runs.append(result.figures)

        self.stdout.write("")
        self.stdout.write(
            f"{'server':<14} {'kernels':<24} {'conc':>4} {'out tok/s':>10} {'TTFT p50 s':>11} {'TTFT p95 s':>11} "
            f"{'CPU ms/tok':>10} {'failed':>6}"
        )
        rows = []
        for concurrency in levels:
            for name in (HUB, MLX, IN_PROCESS):
                summary = summaries.get((name, concurrency))
                if summary is None:
                    continue
                cpu = summary.cpu_ms_per_token
                row = {
                    "server": name,
                    "kernels": self._kernel_label(kernels.get(HUB if name == IN_PROCESS else name)),
                    "concurrency": concurrency,
                    "output_tokens_per_s": round(summary.tokens_per_s or 0, 2),
                    "ttft_p50_s": round(summary.mean_of("ttft_p50_s") or 0, 3),
                    "ttft_p95_s": round(summary.mean_of("ttft_p95_s") or 0, 3),
                    "server_cpu_ms_per_token": None if cpu is None else round(cpu, 1),
                    "requests_failed": sum(run["requests_failed"] for run in summary.runs),
                    "rounds": [
                        {
                            key: run.get(key)
                            for key in ("output_tokens_per_s", "ttft_p50_s", "ttft_p95_s", "wall_s", "server_cpu_s")
                        }
                        for run in summary.runs
                    ],
                }
                rows.append(row)
                self.stdout.write(
                    f"{name:<14} {row['kernels']:<24} {concurrency:>4} {row['output_tokens_per_s']:>10.2f} "
                    f"{row['ttft_p50_s']:>11.3f} "
                    f"{row['ttft_p95_s']:>11.3f} {fmt(cpu, 1):>10} {row['requests_failed']:>6}"
                )

        ratios = []
        verdicts = []
        optimized = (kernels.get(HUB) or {}).get("kernel_path") == "optimized"
        if any(result.server == MLX for result in results):
            self.stdout.write("")
            self.stdout.write(
                "hub / mlx_lm.server (tok/s: higher is better; TTFT and CPU per token: lower is better; "
                "[per-round tok/s ratios])"
            )
            for concurrency in levels:
                hub, mlx = summaries[(HUB, concurrency)], summaries[(MLX, concurrency)]
                figures = {
                    "concurrency": concurrency,
                    "output_tokens_per_s": ratio(hub.tokens_per_s, mlx.tokens_per_s),
                    "ttft_p50": ratio(hub.mean_of("ttft_p50_s"), mlx.mean_of("ttft_p50_s")),
                    "ttft_p95": ratio(hub.mean_of("ttft_p95_s"), mlx.mean_of("ttft_p95_s")),
                    "cpu_per_token": ratio(hub.cpu_ms_per_token, mlx.cpu_ms_per_token),
                }
                entry: dict[str, Any] = {
                    key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()
                }
                # Pairs run back to back, so each pair's ratio shows how much the machine's load moved them.
                per_round = [
                    round(value, 3)
                    for value in (
                        ratio(h["output_tokens_per_s"], m["output_tokens_per_s"])
                        for h, m in zip(hub.runs, mlx.runs, strict=False)
                    )
                    if value is not None
                ]
                entry["output_tokens_per_s_by_round"] = per_round
                ratios.append(entry)
                self.stdout.write(
                    f"  c={concurrency}: tok/s x{fmt(entry['output_tokens_per_s'], 3)}  "
                    f"TTFT p50 x{fmt(entry['ttft_p50'], 3)}  TTFT p95 x{fmt(entry['ttft_p95'], 3)}  "
                    f"CPU/tok x{fmt(entry['cpu_per_token'], 3)}  {per_round}"
                )
                toks_target = TARGET_OPTIMIZED_TOKS_RATIO.get(concurrency, TARGET_TOKS_RATIO) if optimized else 1.0
                verdicts.append(
                    (
                        f"tok/s c={concurrency} >= {toks_target}x",
                        (entry["output_tokens_per_s"] or 0) >= toks_target,
                    )
                )
                if optimized and concurrency in TARGET_OPTIMIZED_TTFT_P50_RATIO:
                    ttft_target = TARGET_OPTIMIZED_TTFT_P50_RATIO[concurrency]
                    verdicts.append(
                        (
                            f"TTFT p50 c={concurrency} <= {ttft_target}x",
                            entry["ttft_p50"] is not None and entry["ttft_p50"] <= ttft_target,
                        )
                    )
                if concurrency in TARGET_TTFT_CONCURRENCY:
                    verdicts.append(
                        (
                            f"TTFT p95 c={concurrency} <= {TARGET_TTFT_P95_RATIO}x",
                            entry["ttft_p95"] is not None and entry["ttft_p95"] <= TARGET_TTFT_P95_RATIO,
                        )
                    )
        web: dict[str, Any] = {}
        if (HUB, 1) in summaries and (IN_PROCESS, 1) in summaries:
            hub, alone = summaries[(HUB, 1)], summaries[(IN_PROCESS, 1)]
            share = ratio(hub.tokens_per_s, alone.tokens_per_s)
            cpu = ratio(hub.cpu_ms_per_token, alone.cpu_ms_per_token)
            per_round = [
                round(value, 3)
                for value in (
                    ratio(h["output_tokens_per_s"], a["output_tokens_per_s"])
                    for h, a in zip(hub.runs, alone.runs, strict=False)
                )
                if value is not None
            ]
            web = {
                "tokens_per_s_share": None if share is None else round(share, 3),
                "cpu_per_token_ratio": None if cpu is None else round(cpu, 3),
                "tokens_per_s_share_by_round": per_round,
            }
            overhead = None if share is None else 100 * (1 - share)
            self.stdout.write(
                f"  c=1 web tier: hub tok/s x{fmt(share, 3)} of in-process stream_generate (overhead "
                f"{fmt(overhead, 1)}%), CPU/tok x{fmt(cpu, 3)}  {per_round}"
            )
            verdicts.append(
                (
                    f"web tier overhead c=1 <= {100 * (1 - TARGET_WEB_SHARE):.0f}%",
                    share is not None and share >= TARGET_WEB_SHARE,
                )
            )
        if HUB in prefix:
            verdicts.append(
                (f"hub prefix reuse >= {TARGET_PREFIX_SPEEDUP}x", prefix[HUB]["speedup"] >= TARGET_PREFIX_SPEEDUP)
            )
        if verdicts:
            self.stdout.write("")
            for label, passed in verdicts:
                self.stdout.write(f"  {'PASS' if passed else 'FAIL'}  {label}")
        self.stdout.write(
            f"load average {conditions['loadavg_start']} -> {conditions['loadavg_end']} on {conditions['cpus']} CPUs; "
            f"{conditions['duration_s']}s"
        )
        return {
            "bench": "mlxhub-vs-mlx_lm.server",
            "model_dir": str(model_dir),
            "settings": {
                key: options[key]
                for key in ("concurrency", "requests", "max_tokens", "prompt_words", "rounds", "warmup")
            },
            "kernels": kernels,
            "rows": rows,
            "ratios": ratios,
            "web_tier": web,
            "prefix_cache": prefix,
            "targets_met": dict(verdicts),
            "conditions": conditions,
        }
