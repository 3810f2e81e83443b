"""This machine's limit for the benchmark's products: NumPy's float32 matrix product, in GFLOP/s.

    python benchmarks/peak.py [--n 2048] [--repeats 3]

An n x n @ n x n float32 product is 2 n^3 floating-point operations; the best of `repeats` timed
products (after one untimed) with threadpoolctl holding NumPy's BLAS to one thread, then to all
of them (os.cpu_count()). blas_kernels() names the BLAS libraries loaded and the kernel each chose
(threadpoolctl's internal_api, version, architecture: for OpenBLAS the core it runs, e.g. Haswell,
which OPENBLAS_CORETYPE can force). No torch here.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def blas_kernels() -> list[dict]:
    """threadpoolctl's record of every BLAS library loaded (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info() if lib["user_api"] == "blas"]


def kernel_label(kernels: list[dict], corename: str | None = None) -> str:
    """'openblas 0.3.27 Haswell' for NumPy's BLAS (the first one loaded), else 'unknown'."""
    if not kernels:
        return f"BLAS core {corename}" if corename else "unknown BLAS"
    k = kernels[0]
    arch = k.get("architecture") or corename or "?"
    return f"{k.get('internal_api')} {k.get('version')} {arch}"


def matmul_gflops(n: int = 2048, repeats: int = 3, threads: int | None = None) -> float:
    """Best GFLOP/s of a float32 n x n product with NumPy's BLAS limited to `threads` threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)  # untimed: thread start-up, pages of `out`
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def machine_peak(n: int = 2048, repeats: int = 3, threads: int | None = None) -> dict:
    """{"n", "repeats", "one_thread", "all_threads", "threads"}: GFLOP/s of NumPy's float32 product."""
    threads = threads or os.cpu_count() or 1
    return {
        "n": n,
        "repeats": repeats,
        "threads": threads,
        "one_thread": matmul_gflops(n, repeats, 1),
        "all_threads": matmul_gflops(n, repeats, threads),
        "kernels": blas_kernels(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    peak = machine_peak(args.n, args.repeats)
    print(
        f"{kernel_label(peak['kernels'])}: float32 {args.n}^3 product, "
        f"{peak['one_thread']:.1f} GFLOP/s on 1 thread, "
        f"{peak['all_threads']:.1f} GFLOP/s on {peak['threads']}"
    )
