"""The CPU kernel path: the launchers' BLAS preload, what a process started with it serves, and how
a live server reports it (/readyz, the engine's model stats, float32 weights counted after conversion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.engine.config import KernelConfig
from inference.engine.kernels import expected_weights_bytes
from mlxhub.kernels import THREADS_VARIABLE, BlasUnavailable, configured_mode, engine_process_env, find_blas
from tests.conftest import REPO, LiveHub

BLAS = find_blas(os.environ.get("MLXHUB_BLAS_LIBRARY", ""))
needs_blas = pytest.mark.skipif(BLAS is None, reason="no BLAS library to preload on this machine")

# Prints this process's kernel plan and the best time of a few 512 x 512 float32 matmuls.
PROBE = """
import json, time
import mlx.core as mx
from mlxhub.kernels import process_plan
a, b = mx.random.normal((512, 512)), mx.random.normal((512, 512))
mx.eval(a @ b)
best = float("inf")
for _ in range(5):
    started = time.perf_counter()
    mx.eval(a @ b)
    best = min(best, time.perf_counter() - started)
print(json.dumps({"plan": process_plan().as_dict(), "matmul_s": best}))
"""


def probe(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def clean_env(**settings: str) -> dict[str, str]:
    inherited = ("LD_PRELOAD", "MLXHUB_CPU_KERNELS", *THREADS_VARIABLE.values())
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    return {**env, **settings}


def test_a_bad_kernel_setting_stops_django_from_starting():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env={**os.environ, "MLXHUB_CPU_KERNELS": "fastest", "DJANGO_SETTINGS_MODULE": "mlxhub.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "MLXHUB_CPU_KERNELS must be one of auto, optimized, stock, got 'fastest'" in done.stderr
    with pytest.raises(ValueError):
        configured_mode({"MLXHUB_CPU_KERNELS": "fastest"})


@needs_blas
def test_auto_preloads_the_blas_first_and_keeps_other_preloads():
    assert BLAS is not None
    env = engine_process_env(clean_env(MLXHUB_CPU_KERNELS="auto", LD_PRELOAD="/opt/other.so"))

    assert env["LD_PRELOAD"] == f"{BLAS.path}:/opt/other.so"
    if BLAS.name == "mkl":
        assert env["MKL_INTERFACE_LAYER"] == "LP64"
    if BLAS.name in THREADS_VARIABLE:  # every core but one, the web tier's
        assert env[THREADS_VARIABLE[BLAS.name]] == str(max(1, len(os.sched_getaffinity(0)) - 1))


@needs_blas
def test_a_thread_count_the_operator_set_is_kept():
    assert BLAS is not None
    assert BLAS.name in THREADS_VARIABLE, f"the launcher knows no thread setting for {BLAS.name}"
    variable = THREADS_VARIABLE[BLAS.name]

    assert engine_process_env(clean_env(**{variable: "7"}))[variable] == "7"


@needs_blas
def test_stock_takes_an_inherited_blas_preload_out_again():
    assert BLAS is not None
    inherited = engine_process_env(clean_env())

    env = engine_process_env({**inherited, "MLXHUB_CPU_KERNELS": "stock"})

    assert "LD_PRELOAD" not in env


def test_optimized_without_a_library_is_refused(tmp_path: Path):
    with pytest.raises(BlasUnavailable, match="MLXHUB_CPU_KERNELS=optimized"):
        engine_process_env(clean_env(MLXHUB_CPU_KERNELS="optimized", MLXHUB_BLAS_LIBRARY=str(tmp_path / "none.so")))


def test_serve_refuses_to_start_optimized_without_a_library(tmp_path: Path):
    env = clean_env(
        MLXHUB_HOME=str(tmp_path),
        MLXHUB_CPU_KERNELS="optimized",
        MLXHUB_BLAS_LIBRARY=str(tmp_path / "none.so"),
        DJANGO_SETTINGS_MODULE="mlxhub.settings",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "9"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert "no BLAS library was found" in done.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # refused before bootstrapping anything


@needs_blas
def test_a_process_started_with_the_engine_environment_runs_float32_matmuls_on_that_blas():
    assert BLAS is not None
    optimized = probe(engine_process_env(clean_env()))
    stock = probe(engine_process_env(clean_env(MLXHUB_CPU_KERNELS="stock")))

    assert optimized["plan"] == {"setting": "auto", "path": "optimized", "blas": BLAS.name, "library": str(BLAS.path)}
    assert stock["plan"] == {"setting": "stock", "path": "stock", "blas": None, "library": None}
    # The bundled reference BLAS does a few GFLOP/s; an optimized one tens to hundreds.
    assert optimized["matmul_s"] * 3 < stock["matmul_s"], (optimized, stock)


def test_a_process_without_the_preload_cannot_serve_optimized_and_says_why():
    result = probe(clean_env(MLXHUB_CPU_KERNELS="optimized"))

    assert result["plan"]["path"] == "stock"
    assert "no BLAS library is preloaded" in result["plan"]["problem"]


@pytest.mark.live
def test_a_live_server_reports_its_kernel_path_and_counts_its_weights_after_conversion(live_hub: LiveHub):
    import mlx_lm
    from mlx.utils import tree_flatten

    expected = "stock" if configured_mode() == "stock" or BLAS is None else "optimized"
    with live_hub.client() as client:
        ready = client.get("/readyz").json()
        client.post("/v1/completions", json={"model": "demo", "prompt": "hello", "max_tokens": 1}).raise_for_status()
        stats = client.get("/v1/engine").json()["models"]

    model = stats["demo"]  # by profile name; the key is the admin's, so it sees the folder too
    assert ready["kernels"]["path"] == expected
    assert model["kernel_path"] == expected
    parameters = tree_flatten(mlx_lm.load(model["path"])[0].parameters())
    count = sum(array.size for _, array in parameters)
    if expected == "optimized":
        assert ready["kernels"]["blas"] == model["blas"] == BLAS.name  # type: ignore[union-attr]
        assert model["weights_dtype"] == "float32"
        assert model["weights_bytes"] == 4 * count  # float32: twice the bfloat16 checkpoint
    else:
        assert model["weights_dtype"] == "bfloat16"
        assert model["weights_bytes"] == 2 * count
    # What the engine can expect before a load, from the file's size (its header aside).
    on_disk = (Path(model["path"]) / "model.safetensors").stat().st_size
    estimate = expected_weights_bytes(
        model["path"], on_disk, KernelConfig(path=expected, dequantize_limit_bytes=1 << 40)
    )
    assert model["weights_bytes"] <= estimate < 1.05 * model["weights_bytes"]
