"""Probe for issue 27 item 2 (not wired into fran): an implicit-GEMM convolution forward in one
compiled, GIL-free Numba function calling OpenBLAS's sgemm by symbol name.

NumPy's wheels carry OpenBLAS as numpy.libs/libscipy_openblas64_*.so, whose CBLAS symbols are
prefixed (scipy_cblas_sgemm64_, 64-bit ints). llvmlite.binding.load_library_permanently makes
them resolvable, and numba.types.ExternalFunction declares the call by NAME, so the compiled
function holds no ctypes pointer and Numba caches it (a ctypes binding could not be cached).

The function im2cols a block of `nb` images into one reusable buffer and multiplies it into the
right columns of z (ldc = all of z's columns), for a stride-1 k x k convolution with padding p.
It prints whether z is bitwise fran's own result (lay_out + correlate, the column-blocked
product) and the medians of each part:

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/implicit_gemm_probe.py [--nb 8]

Loaded machine, 2026-12-07 (the ResNet's 16 -> 16 3x3 layer, batch 128, float32): bitwise equal;
fran 47.7-65.7 ms, this 42.2-62.9 ms, of which sgemm 18.6-19.4 ms and the block im2col loop
38.6-40.9 ms (NumPy's whole-batch im2col: 26.6-34.5 ms). The copy loop, short rows of 28 with
bounds at each end, is the part to make faster before this can pay.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fran.layers import _conv  # noqa: E402

LIB = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas64_*.so"))
llvm.load_library_permanently(LIB[0])
f32p, i64 = types.CPointer(types.float32), types.int64
sgemm = types.ExternalFunction(  # cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, ...)
    "scipy_cblas_sgemm64_",
    types.void(
        types.int32, types.int32, types.int32, i64, i64, i64,
        types.float32, f32p, i64, f32p, i64, types.float32, f32p, i64,
    ),
)  # fmt: skip
ROW_MAJOR, NO_TRANS = 101, 111


@njit(cache=True, nogil=True)
def correlate_blocks(x, w2, k, p, z, nb, buf, do_copy=True, do_gemm=True):
    """z (O, N*OH*OW) = w2 (O, C*k*k) @ im2col(x) for x (C, N, H, W), stride 1, nb images a block."""
    C, N, H, W = x.shape
    O, K = w2.shape
    OH, OW = H + 2 * p - k + 1, W + 2 * p - k + 1
    L = OH * OW
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        for c in range(C if do_copy else 0):
            for i in range(k):
                for j in range(k):
                    row = buf[(c * k + i) * k + j]
                    lo, hi = max(0, p - j), min(OW, W + p - j)
                    for n in range(m):
                        for r in range(OH):
                            h, base = r + i - p, n * L + r * OW
                            if h < 0 or h >= H:
                                for q in range(OW):
                                    row[base + q] = 0
                                continue
                            for q in range(lo):
                                row[base + q] = 0
                            for q in range(lo, hi):
                                row[base + q] = x[c, n0 + n, h, q + j - p]
                            for q in range(hi, OW):
                                row[base + q] = 0
        if do_gemm:
            one, zero = np.float32(1.0), np.float32(0.0)
            sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, O, m * L, K, one, w2.ctypes, K,
                  buf.ctypes, buf.shape[1], zero, z[:, n0 * L :].ctypes, z.shape[1])  # fmt: skip


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nb", type=int, default=8, help="images per block")
    p.add_argument("--n", type=int, default=128, help="batch")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    N, C, H = args.n, args.channels, args.size
    xs = rng.standard_normal((C, N, H, H), dtype=np.float32)  # channels first, as conv2d hands on
    x = xs.transpose(1, 0, 2, 3)
    w = rng.standard_normal((C, C, 3, 3), dtype=np.float32)
    w2 = np.ascontiguousarray(w.reshape(C, -1))
    buf = np.empty((C * 9, args.nb * H * H), np.float32)
    z = np.empty((C, N * H * H), np.float32)
    correlate_blocks(xs, w2, 3, 1, z, args.nb, buf)
    ref = _conv.correlate(_conv.lay_out(x, w, 1, 1))
    print("bitwise fran's result:", np.array_equal(z, ref))
    parts = {
        "fran (lay_out + correlate)": lambda: _conv.correlate(_conv.lay_out(x, w, 1, 1)),
        "implicit GEMM": lambda: correlate_blocks(xs, w2, 3, 1, z, args.nb, buf),
        "its block im2col only": lambda: correlate_blocks(
            xs, w2, 3, 1, z, args.nb, buf, True, False
        ),
        "its sgemm only": lambda: correlate_blocks(xs, w2, 3, 1, z, args.nb, buf, False, True),
        "NumPy whole-batch im2col": lambda: _conv.im2col(x, 3, 1, 1),
    }
    for name, fn in parts.items():
        print(f"{name:28s} {median_ms(fn, args.repeats):8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
