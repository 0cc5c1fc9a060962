"""The CPU kernel path: which BLAS serves MLX's float32 matmuls, declared in this one place.

The PyPI ``mlx-cpu`` wheel links a bundled reference BLAS (a few GFLOP/s); ``libmlx.so``
imports ``cblas_sgemm`` by name, so a library preloaded into the process (``LD_PRELOAD``)
supplies it instead, and float32 weights then run 3-5x faster than the stock bfloat16
path (docs/benchmarks.md). The preload has to be in the environment when a process
starts, so every launcher of a process that hosts an engine (``manage.py serve``, the
benchmark, the tests' live hubs) builds that environment with ``engine_process_env``;
``python -m mlxhub.kernels COMMAND...`` runs any other command with it.

Inside such a process ``process_plan`` says which path its engine serves:
``MLXHUB_CPU_KERNELS=auto`` (the default) serves float weights as float32 when the BLAS
is there and the stock path otherwise; ``optimized`` requires the BLAS (launchers refuse
to start without one); ``stock`` keeps the checkpoint's own dtype and MLX's kernels.

This module is plain Python (settings.py imports it): no Django, no MLX at import time.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.engine.config import KernelConfig

CPU_KERNEL_MODES = ("auto", "optimized", "stock")
SETTING = "MLXHUB_CPU_KERNELS"
LIBRARY_SETTING = "MLXHUB_BLAS_LIBRARY"
# MLX calls cblas_sgemm with 32-bit integers: MKL must use its LP64 interface whatever the environment says.
MKL_ENV = {"MKL_INTERFACE_LAYER": "LP64"}
# The BLAS gets every core but one unless the environment says otherwise: the web tier keeps a core, and on
# 2 shared cores one MKL thread served as many tokens/s as two for ~40% less CPU (docs/benchmarks.md).
THREADS_VARIABLE = {"mkl": "MKL_NUM_THREADS", "openblas": "OPENBLAS_NUM_THREADS"}
# A quantized checkpoint is dequantized to float32 on the optimized path (measured 15-45x faster
# here) only while the float32 weights stay under this share of the machine's memory.
DEQUANTIZE_MAX_MEMORY_FRACTION = 0.25


class BlasUnavailable(RuntimeError):
    """MLXHUB_CPU_KERNELS=optimized, and no BLAS library to serve it."""


@dataclass(frozen=True)
class BlasLibrary:
    name: str  # "mkl", "openblas", or the file's stem for a library named in MLXHUB_BLAS_LIBRARY
    path: Path


@dataclass(frozen=True)
class KernelPlan:
    setting: str
    path: str  # "optimized" or "stock": what this process's engine serves
    blas: BlasLibrary | None
    problem: str | None = None  # why "optimized" was required and cannot be served

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "setting": self.setting,
            "path": self.path,
            "blas": self.blas.name if self.blas else None,
            "library": str(self.blas.path) if self.blas else None,
        }
        if self.problem:
            report["problem"] = self.problem
        return report


def parse_cpu_kernels(raw: str) -> str:
    mode = raw.strip().lower() or "auto"
    if mode not in CPU_KERNEL_MODES:
        raise ValueError(raw)
    return mode


def configured_mode(environ: Mapping[str, str] | None = None) -> str:
    """MLXHUB_CPU_KERNELS from an environment (this process's by default); bad values raise ValueError."""
    return parse_cpu_kernels((os.environ if environ is None else environ).get(SETTING, "auto"))


def _blas_name(path: Path) -> str:
    lowered = path.name.lower()
    for name in ("mkl", "openblas", "blis"):
        if name in lowered:
            return name
    return path.name.split(".so")[0].removeprefix("lib")


def _candidates(override: str) -> list[Path]:
    if override:
        return [Path(override).expanduser()]
    # The `mkl` wheel (requirements.txt, x86_64) installs into this environment's lib/.
    prefix_lib = Path(sys.prefix) / "lib"
    found = [prefix_lib / "libmkl_rt.so.3", prefix_lib / "libmkl_rt.so.2"]
    # A system OpenBLAS, e.g. Debian's libopenblas0-pthread on aarch64, where no MKL wheel exists.
    triplet = f"{platform.machine()}-linux-gnu"
    found += [
        Path("/usr/lib") / triplet / "openblas-pthread" / "libopenblas.so.0",
        Path("/usr/lib") / triplet / "libopenblas.so.0",
        Path("/usr/lib64/libopenblasp.so.0"),
        Path("/usr/lib64/libopenblas.so.0"),
    ]
    return found


def find_blas(override: str = "") -> BlasLibrary | None:
    """The library a launcher preloads: MLXHUB_BLAS_LIBRARY when set, else MKL from this environment,
    else a system OpenBLAS. None on other systems than Linux, or when none is installed."""
    if not sys.platform.startswith("linux"):
        return None
    for path in _candidates(override):
        # ld.so splits LD_PRELOAD on colons and spaces: such a path cannot be preloaded.
        if path.is_file() and not any(separator in str(path) for separator in ": \t"):
            return BlasLibrary(_blas_name(path), path.resolve())
    return None


def engine_process_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a process that hosts an engine: ``environ`` plus the BLAS preload it asks for.

    Reads MLXHUB_CPU_KERNELS and MLXHUB_BLAS_LIBRARY from ``environ`` (what the child's settings
    will see). With ``stock`` a preload of that library inherited from a parent is taken out
    again; with ``optimized`` and no library it raises BlasUnavailable.
    """
    env = dict(environ)
    mode = configured_mode(env)
    blas = find_blas(env.get(LIBRARY_SETTING, ""))
    preloads = [entry for entry in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if entry]
    if blas is not None:
        preloads = [entry for entry in preloads if Path(entry).resolve() != blas.path]
    if mode == "optimized" and blas is None:
        raise BlasUnavailable(
            f"{SETTING}=optimized, but no BLAS library was found: install the mkl package (x86_64, "
            f"requirements.txt), a system OpenBLAS (libopenblas0-pthread), or name one in {LIBRARY_SETTING}."
        )
    if mode != "stock" and blas is not None:
        preloads.insert(0, str(blas.path))
        if blas.name == "mkl":
            env.update(MKL_ENV)
        if blas.name in THREADS_VARIABLE:
            env.setdefault(THREADS_VARIABLE[blas.name], str(blas_threads()))
    if preloads:
        env["LD_PRELOAD"] = ":".join(preloads)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def blas_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) - 1)


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


@functools.cache
def active_blas() -> BlasLibrary | None:
    """The library that defines ``cblas_sgemm`` in this process's global symbol scope: a preloaded one.

    libmlx.so resolves its ``cblas_sgemm`` in the global scope before its own dependencies (the
    reference BLAS, which Python loads privately), so this is the library MLX's matmuls call.
    """
    if not sys.platform.startswith("linux"):
        return None
    process = ctypes.CDLL(None)
    try:
        address = ctypes.cast(process.cblas_sgemm, ctypes.c_void_p).value
    except AttributeError:
        return None
    try:
        dladdr = process.dladdr  # glibc >= 2.34 has it in libc; before, in libdl
    except AttributeError:
        dladdr = ctypes.CDLL("libdl.so.2").dladdr
    info = _DlInfo()
    if not address or not dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    path = Path(os.fsdecode(info.dli_fname))
    return BlasLibrary(_blas_name(path), path)


def process_plan(mode: str | None = None) -> KernelPlan:
    """The kernel path of an engine in this process, for MLXHUB_CPU_KERNELS (read from the environment)."""
    setting = configured_mode() if mode is None else parse_cpu_kernels(mode)
    blas = active_blas()
    if setting == "stock" or (setting == "auto" and blas is None):
        return KernelPlan(setting, "stock", None)
    if blas is None:
        return KernelPlan(
            setting,
            "stock",
            None,
            problem=f"{SETTING}=optimized, but no BLAS library is preloaded into this process "
            "(start it with `manage.py serve` or `python -m mlxhub.kernels COMMAND...`).",
        )
    return KernelPlan(setting, "optimized", blas)


def dequantize_limit_bytes() -> int:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(physical * DEQUANTIZE_MAX_MEMORY_FRACTION)


def engine_kernels(mode: str | None = None) -> KernelConfig:
    """This process's plan as an engine is told it (the engine reads nothing from this module itself)."""
    from inference.engine.config import KernelConfig

    plan = process_plan(mode)
    return KernelConfig(
        path=plan.path,
        blas=plan.blas.name if plan.blas else None,
        problem=plan.problem,
        dequantize_limit_bytes=dequantize_limit_bytes(),
    )


def main(argv: list[str]) -> int:
    """``python -m mlxhub.kernels``: print the engine environment's additions; with a command, run it there."""
    try:
        env = engine_process_env(os.environ)
    except (BlasUnavailable, ValueError) as exc:
        print(f"mlxhub.kernels: {exc}", file=sys.stderr)
        return 2
    if not argv:
        for key in ("LD_PRELOAD", *MKL_ENV, *THREADS_VARIABLE.values()):
            if key in env and env[key] != os.environ.get(key):
                print(f"{key}={env[key]}")
        return 0
    os.execvpe(argv[0], argv, env)  # noqa: S606 (the operator's own command line, no shell)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
