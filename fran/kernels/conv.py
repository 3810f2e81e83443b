"""Implicit-GEMM convolution: the im2col products of fran.layers._conv without the im2col matrix.

A correlation of x (N, C, H, W) with w (O, C, k, k) is z = w2 @ cols, w2 = w as (O, C*k*k) and
cols = im2col(x) (C*k*k, N*OH*OW); its vjp dw = dz @ cols.T and, for stride 1, dx = the shifted
sums of D = w2.T @ corner(dz) (see _conv.conv_input_grad_stride1). The reference materialises
cols (C*k*k times x) and D (C*k*k times dx) for the whole batch, then multiplies in column blocks
(fran.layers._gemm). The twins here walk the same column blocks: each block of cols is copied
into a small buffer that stays in cache and multiplied there at once by BLAS (OpenBLAS's own
cblas_sgemm/dgemm, called from the compiled code without the GIL), and each block of D is summed
into dx while it is in cache. The BLAS calls are the reference's own (the same shapes, transposes
and library), the blocks' partial weight gradients are added in block order, and D's shifted
sums in the reference's order, so the results are bitwise the reference's.

BLAS is bound by symbol name: NumPy's wheels carry OpenBLAS (numpy.libs/libscipy_openblas64_*,
CBLAS names scipy_cblas_?gemm64_, 64-bit integers); llvmlite makes its symbols resolvable and a
numba ExternalFunction declares the call by name, so the compiled machine code holds no address
and is cached on disk like the other kernels. Where that library is not found (another NumPy
build), available() is False and the layers keep the reference.

Block ranges [b0, b1) let a caller cut one product into fixed runs of blocks for its threads.
"""

from __future__ import annotations

import glob
import os
import threading

import numpy as np

from fran import kernels

FLOATS = (np.float32, np.float64)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SYMBOLS = {"s": "scipy_cblas_sgemm64_", "d": "scipy_cblas_dgemm64_"}

HELPERS = (
    "_padded",
    "_im2col_block",
    "_corner_block",
)  # plain functions until _load_blas compiles them
_bound: bool | None = None
_bind_lock = threading.Lock()


def gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
    """C = op(A) @ op(B) (row major, alpha 1, beta 0): a name the compiled code resolves by type."""
    raise NotImplementedError("fran.kernels.conv.gemm runs only inside compiled kernels")


def available(dtype) -> bool:
    """Whether the compiled implicit-GEMM kernels run for this dtype in this process."""
    return kernels.compiled() and np.dtype(dtype) in FLOATS and _bind()


def _bind() -> bool:
    global _bound
    if _bound is None:
        with _bind_lock:
            if _bound is None:
                _bound = _load_blas()
    return _bound


def _load_blas() -> bool:
    import numba
    from llvmlite import binding as llvm
    from numba import types
    from numba.extending import overload

    libs = sorted(glob.glob(os.path.dirname(np.__file__) + ".libs/libscipy_openblas64_*"))
    if not libs:
        return False
    llvm.load_library_permanently(libs[0])
    if not all(llvm.address_of_symbol(name) for name in SYMBOLS.values()):
        return False
    i32, i64 = types.int32, types.int64
    extern = {}
    for prefix, t in (("s", types.float32), ("d", types.float64)):
        p = types.CPointer(t)
        sig = types.void(i32, i32, i32, i64, i64, i64, t, p, i64, p, i64, t, p, i64)
        extern[t] = (
            types.ExternalFunction(SYMBOLS[prefix], sig),
            numba.from_dtype(np.dtype(t.name)),
        )

    @overload(gemm, jit_options={"nogil": True})
    def _gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
        f, _ = extern[C.dtype]
        one, zero = (np.float32(1), np.float32(0)) if C.dtype == types.float32 else (1.0, 0.0)

        def impl(ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
            f(ROW_MAJOR, ta, tb, M, N, K, one, A.ctypes, lda, B.ctypes, ldb, zero, C.ctypes, ldc)

        return impl

    for name in HELPERS:  # compiled into the kernels that call them, which find them as globals
        globals()[name] = kernels._compile(globals()[name])
    return True


def correlate(x, w2, k, s, p, out, block, b0, b1, buf, z):
    """z[:, blocks b0..b1) = w2 @ cols[:, those blocks] (x any layout, w2 (O, C*k*k) contiguous,
    z (O, N*OH*OW) contiguous, buf (C*k*k, block) scratch)."""
    _correlate(x, w2, k, s, p, out[0], out[1], block, b0, b1, buf, z)


def weight_grad_parts(x, dz, k, s, p, out, block, b0, b1, buf, parts):
    """parts[b - b0] = dz[:, block b] @ cols[:, block b].T for the blocks b0..b1 (dz contiguous)."""
    _weight_grad_parts(x, dz, k, s, p, out[0], out[1], block, b0, b1, buf, parts)


def sum_in_order(parts, out):
    """out = parts[0] + parts[1] + ..., added left to right (the reference's block order)."""
    _sum_in_order(parts, out)


def input_grad_stride1(w2, dz, k, size, block, b0, b1, bufs, full):
    """full (C, N*Hp*Wp) on blocks b0..b1 of its columns: the shifted sums of D = w2.T @ corner(dz)
    for dz (O, N*OH*OW) contiguous, size = (Hp, Wp) the padded input; bufs (3, ...) scratch."""
    _input_grad_stride1(w2, dz, k, size[0], size[1], block, b0, b1, bufs[0], bufs[1], bufs[2], full)


def _padded(x, p):
    """x (N, C, H, W), any layout, as a C-contiguous copy zero-padded by p on each side."""
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                dst, src = xp[n, c, h + p, p:], x[n, c, h]
                for w in range(W):  # loops from 0 over slices: Numba vectorises these
                    dst[w] = src[w]
    return xp


def _im2col_block(xp, k, s, OH, OW, t0, t1, buf):
    """buf[:, :t1-t0] = im2col(x)[:, t0:t1] from xp, x padded: runs of one output row each."""
    C = xp.shape[1]
    L = OH * OW
    n0, n1 = t0 // L, (t1 - 1) // L + 1  # the images, then each one's rows, the block meets
    for c in range(C):
        for i in range(k):
            for j in range(k):
                row = buf[(c * k + i) * k + j]
                for n in range(n0, n1):
                    r0 = max(0, (t0 - n * L) // OW)
                    r1 = min(OH, (t1 - n * L + OW - 1) // OW)
                    for r in range(r0, r1):
                        t = n * L + r * OW
                        src = xp[n, c, s * r + i]
                        base = t - t0
                        qa, qb = max(0, t0 - t), min(OW, t1 - t)
                        if s == 1:  # contiguous: vectorised
                            dst, src1 = row[base + qa : base + qb], src[qa + j : qb + j]
                            for q in range(qb - qa):
                                dst[q] = src1[q]
                        else:
                            dst, src1 = row[base + qa : base + qb], src[s * qa + j :]
                            for q in range(qb - qa):
                                dst[q] = src1[s * q]


@kernels.jit
def _correlate(x, w2, k, s, p, OH, OW, block, b0, b1, buf, z):
    O, K = w2.shape
    n = z.shape[1]
    xp = _padded(x, p)
    for b in range(b0, b1):
        t0 = b * block
        t1 = min(n, t0 + block)
        _im2col_block(xp, k, s, OH, OW, t0, t1, buf)
        gemm(NO_TRANS, NO_TRANS, O, t1 - t0, K, w2, K, buf, block, z[:, t0:], n)


@kernels.jit
def _weight_grad_parts(x, dz, k, s, p, OH, OW, block, b0, b1, buf, parts):
    O, n = dz.shape
    K = buf.shape[0]
    xp = _padded(x, p)
    for b in range(b0, b1):
        t0 = b * block
        t1 = min(n, t0 + block)
        _im2col_block(xp, k, s, OH, OW, t0, t1, buf)
        gemm(NO_TRANS, TRANS, O, K, t1 - t0, dz[:, t0:], n, buf, block, parts[b - b0], K)


@kernels.jit
def _sum_in_order(parts, out):
    B, M, K = parts.shape
    for m in range(M):
        for t in range(K):
            out[m, t] = parts[0, m, t]
    for b in range(1, B):
        for m in range(M):
            for t in range(K):
                out[m, t] += parts[b, m, t]


def _corner_block(dz, OH, OW, Hp, Wp, t0, t1, buf):
    """buf[:, :t1-t0] = columns t0..t1 of dz laid in the top-left OH x OW corner of (N, Hp, Wp)."""
    O = dz.shape[0]
    HW = Hp * Wp
    n0, n1 = t0 // HW, (t1 - 1) // HW + 1
    for o in range(O):
        for n in range(n0, n1):
            for h in range(max(0, (t0 - n * HW) // Wp), min(Hp, (t1 - n * HW + Wp - 1) // Wp)):
                t = n * HW + h * Wp
                qa, qb = max(0, t0 - t), min(Wp, t1 - t)
                dst = buf[o, t - t0 + qa : t - t0 + qb]
                if h < OH:
                    src = dz[o, (n * OH + h) * OW + qa :]
                    for q in range(min(OW, qb) - qa):  # loops from 0 over slices: vectorised
                        dst[q] = src[q]
                    for q in range(max(0, OW - qa), qb - qa):
                        dst[q] = 0
                else:
                    for q in range(qb - qa):
                        dst[q] = 0


@kernels.jit
def _input_grad_stride1(w2, dz, k, Hp, Wp, block, b0, b1, cb, prev, cur, full):
    O, K = w2.shape
    C, n = full.shape
    OH, OW = Hp - k + 1, Wp - k + 1
    kk = k * k
    if b0 > 0:  # the block before: the first shifts of this run read its end
        t0 = (b0 - 1) * block
        _corner_block(dz, OH, OW, Hp, Wp, t0, t0 + block, cb)
        gemm(TRANS, NO_TRANS, K, block, O, w2, K, cb, block, prev, block)
    for b in range(b0, b1):
        t0 = b * block
        t1 = min(n, t0 + block)
        m = t1 - t0
        _corner_block(dz, OH, OW, Hp, Wp, t0, t1, cb)
        gemm(TRANS, NO_TRANS, K, m, O, w2, K, cb, block, cur, block)
        for c in range(C):
            out = full[c, t0:t1]
            first = cur[c * kk]
            for t in range(m):
                out[t] = first[t]
            for ij in range(1, kk):
                sh = (ij // k) * Wp + ij % k
                d = cur[c * kk + ij]
                dp = prev[c * kk + ij]
                # out[l] += D[l - sh] for l >= sh: from the block before while l - sh < t0
                a, e = max(0, sh - t0), min(sh, m)
                if a < e:
                    o1, d1 = out[a:e], dp[a - sh + block :]
                    for t in range(e - a):
                        o1[t] += d1[t]
                if sh < m:
                    o2 = out[sh:]
                    for t in range(m - sh):
                        o2[t] += d[t]
        prev, cur = cur, prev
