"""Probe for issue 27 item 2: an implicit-GEMM convolution forward in one compiled, GIL-free
Numba function calling OpenBLAS's sgemm by symbol name. Superseded by fran/kernels/conv.py (the
wired kernels: forward, weight and input gradients) and benchmarks/conv_shapes.py (their bench).

NumPy's wheels carry OpenBLAS as numpy.libs/libscipy_openblas64_*.so, whose CBLAS symbols are
prefixed (scipy_cblas_sgemm64_, 64-bit ints). llvmlite.binding.load_library_permanently makes
them resolvable, and numba.types.ExternalFunction declares the call by NAME, so the compiled
function holds no ctypes pointer and Numba caches it (a ctypes binding could not be cached).

The function copies a block of `nb` images into a zero-bordered buffer, im2cols it into a second
reusable buffer (each row a run of OW contiguous values, no bounds tests), and multiplies that
into the right columns of z (ldc = all of z's columns), for a stride-1 k x k convolution with
padding p. It prints whether z is bitwise fran's own result (lay_out + correlate, the
column-blocked product) and the medians of each part:

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/implicit_gemm_probe.py [--nb 4]

Loaded machine (load average 8 on 2 CPUs), 2026-12-07, the ResNet's 16 -> 16 3x3 pad-1 layer on
28x28, batch 128, float32, 9 repeats: bitwise equal for every nb tried; fran 53.4 ms against
32.9 ms with nb = 4, 60.5 against 42.3 with nb = 8 (block copy 25.4, sgemm 24.0; NumPy's
whole-batch im2col alone 37.2), 68.1 against 52.2 with nb = 2, 49.4 against 52.7 with nb = 16.
A first version that im2col'ed straight from x with bounds tests in the inner loop copied at
half NumPy's speed and barely won. Not wired into conv2d: the vjp needs the weight gradient
dz @ cols.T computed from the same blocks, summed in matmul_wide_t's block order to keep the
bits, and the input gradient; and a fallback where NumPy's BLAS is not this bundled OpenBLAS.
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
    Hp, Wp = H + 2 * p, W + 2 * p
    OH, OW = Hp - k + 1, Wp - k + 1
    L = OH * OW
    pad = np.zeros((C, nb, Hp, Wp), dtype=x.dtype)  # borders stay zero
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        if do_copy:
            for c in range(C):
                for n in range(m):
                    for h in range(H):
                        for w in range(W):
                            pad[c, n, h + p, w + p] = x[c, n0 + n, h, w]
            for c in range(C):
                for i in range(k):
                    for j in range(k):
                        row = buf[(c * k + i) * k + j]
                        for n in range(m):
                            for r in range(OH):
                                src = pad[c, n, r + i]
                                base = n * L + r * OW
                                for q in range(OW):
                                    row[base + q] = src[q + j]
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
    p.add_argument("--nb", type=int, default=4, help="images per block")
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
