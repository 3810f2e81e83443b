"""The machine a bench runs on: CPU, thread settings, NumPy's BLAS and the kernel it ran.

No torch here (machine_info is handed the torch module bench.py imported).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import peak

import fran

REPO = Path(__file__).resolve().parent.parent
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_thread_limit(threads: int):
    """threadpoolctl's limit on NumPy's BLAS if installed; else the env variables already do it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def threadpool_info() -> list | None:
    try:
        from threadpoolctl import threadpool_info as info
    except ImportError:
        return None
    return info()


def openblas_runtime() -> dict | None:
    """The thread count and core of the OpenBLAS NumPy loaded (Linux; needs no threadpoolctl)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix in ("", "scipy_"):
            for suffix in ("", "64_"):
                threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
                if threads is None or core is None:
                    continue
                core.restype = ctypes.c_char_p
                return {"library": path, "num_threads": threads(), "corename": core().decode()}
    return None


def numpy_blas() -> dict:
    """NumPy's BLAS as its build config names it."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):  # numpy < 1.25 has no mode="dicts"
        return {"name": "unknown"}
    return {k: blas.get(k) for k in ("name", "version", "openblas configuration")}


def cpu_model() -> str:
    """The CPU's model name and its vector extensions that matter for BLAS and oneDNN kernels."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = dict(line.partition(":")[::2] for line in lines if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    features = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return f"{info.get('model name', platform.machine())} ({', '.join(features) or 'no AVX2'})"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def machine_info(threads: int, torch, thread_vars: tuple) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fran": fran.__version__,
        "fran_git": git_commit(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "openblas_runtime": openblas_runtime(),
        "threadpoolctl": threadpool_info(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_parallel_info": torch.__config__.parallel_info().splitlines(),
        "threads": threads,
        "thread_env": {var: os.environ.get(var) for var in thread_vars},
        "blas_env": {var: os.environ.get(var) for var in BLAS_VARS},
        "blas_kernels": peak.blas_kernels(),
    }


def blas_label(machine: dict) -> str:
    """The BLAS kernel NumPy ran, and the OpenBLAS variables it ran with."""
    core = (machine.get("openblas_runtime") or {}).get("corename")
    kernels = [k for k in machine.get("blas_kernels") or [] if "numpy" in (k["filepath"] or "")]
    label = peak.kernel_label(kernels or machine.get("blas_kernels") or [], core)
    if core and core.lower() not in label.lower():
        label += f" (corename {core})"
    env = machine.get("blas_env") or {}
    setting = ", ".join(f"{k}={v}" for k, v in env.items() if v is not None) or "both unset"
    return f"{label}; {setting}"
