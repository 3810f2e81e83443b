"""Patches-times-weights convolution helpers, shared by conv2d, conv2d_transpose and maxpooling.

im2col turns every k x k window of a batch into one column of a matrix, so that a convolution is a
single BLAS matrix product; col2im is its adjoint (it adds every column back onto its window).
Layout: the columns are ordered (channel, ki, kj) x (sample, out_row, out_col), i.e. shape
(C*k*k, N*OH*OW). Putting the channel axis first and the batch axis second means the product
`w (O, C*k*k) @ cols` is already laid out as (O, N, OH, OW): the NCHW result is a free transposed
view of it, and the next layer's im2col reads that view directly, with no copy in between.
Also here: matmul_wide / matmul_wide_t (the products with these wide matrices, in column blocks,
which single-threaded OpenBLAS runs faster) and the stride-1 input gradient of a convolution.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_out(size: int, k: int, stride: int, pad: int = 0) -> int:
    """Output length of a k-window sliding with `stride` over `size` zero-padded by `pad` (floor)."""
    return (size + 2 * pad - k) // stride + 1


def windows(x: np.ndarray, k: int, stride: int, padding: int = 0) -> np.ndarray:
    """All k x k windows of x (N, C, H, W) as a strided view (N, C, OH, OW, k, k); no copy."""
    if padding:
        p = padding
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def im2col(x: np.ndarray, k: int, stride: int, padding: int = 0) -> np.ndarray:
    """x (N, C, H, W) -> cols (C*k*k, N*OH*OW); one copy, done by NumPy's strided loops."""
    N, C, _, _ = x.shape
    win = windows(x, k, stride, padding)
    _, _, OH, OW, _, _ = win.shape
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(C * k * k, N * OH * OW)


def col2im(
    cols: np.ndarray,
    C: int,
    N: int,
    OH: int,
    OW: int,
    k: int,
    stride: int,
    H: int,
    W: int,
) -> np.ndarray:
    """Adjoint of im2col without padding: cols (C*k*k, N*OH*OW) -> (C, N, H, W), summing overlaps.

    The loop runs over the k*k kernel offsets only; each step adds one strided slab of the whole
    batch, so overlapping windows (stride < k) accumulate correctly.
    """
    cols = cols.reshape(C, k, k, N, OH, OW)
    out = np.zeros((C, N, H, W), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i : i + stride * OH : stride, j : j + stride * OW : stride] += cols[:, i, j]
    return out


# OpenBLAS runs a short, very wide product such as (6 x 25) @ (25 x 36864) (LeNet's first
# convolution on a batch of 64) two to three times slower than the same product cut into blocks of
# columns (measured: 0.69 ms whole, 0.30 ms in blocks of 4096; the product with the transpose, for
# the weight gradient, 1.25 ms against 0.40 ms). The best block keeps the block's columns of both
# operands (the K and M rows of a column) within about 512 kB: 4096 columns for that product,
# 1024 for LeNet's second conv, (16 x 54) @ (54 x 6400) and its gradients (there 0.47 ms -> 0.24 ms
# for the weight gradient); wider blocks fall off the cliff again. Blocks only pay while the
# small matrix (weights or weight gradient, M x K) is small: for the Fashion-MNIST CNN's second
# convolution, (64 x 288) @ (288 x 7744), they cost 15% (forward) to 90% (weight gradient), and
# whole products of that size also let OpenBLAS use a second core (1.9 ms against 3.8 ms).
GEMM_BLOCK_BYTES = 1 << 19
SMALL_MATRIX = 4096  # M * K at most this: compute in column blocks


def _block_columns(m: int, k: int, itemsize: int) -> int | None:
    """Columns per block for an (m, k) x (k, n) product, or None to do it whole: the power of two
    (at least 256) whose m + k rows fit GEMM_BLOCK_BYTES, when m * k <= SMALL_MATRIX."""
    if m * k > SMALL_MATRIX:
        return None
    fit = GEMM_BLOCK_BYTES // ((m + k) * itemsize)
    return max(256, 1 << (fit.bit_length() - 1)) if fit else 256


def matmul_wide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, N), a small a computed one block of columns of b at a time (see above)."""
    m, n = a.shape[0], b.shape[1]
    block = _block_columns(m, a.shape[1], b.itemsize)
    if block is None or n <= block:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))
    for i in range(0, n, block):
        np.matmul(a, b[:, i : i + block], out=out[:, i : i + block])
    return out


def matmul_wide_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, N) @ b.T for b (K, N): for a small result, the sum over blocks of a_blk @ b_blk.T."""
    n = a.shape[1]
    block = _block_columns(a.shape[0], b.shape[0], b.itemsize)
    if block is None or n <= block:
        return a @ b.T
    out = a[:, :block] @ b[:, :block].T
    for i in range(block, n, block):
        out += a[:, i : i + block] @ b[:, i : i + block].T
    return out


def in_corner(dz: np.ndarray, N: int, OH: int, OW: int, H: int, W: int) -> np.ndarray:
    """dz (O, N*OH*OW) in the top-left OH x OW corner of zeros (O, N, H, W), as (O, N*H*W):
    on that grid every kernel offset (i, j) of a stride-1 window is one flat shift i*W + j."""
    O = dz.shape[0]
    out = np.zeros((O, N, H, W), dtype=dz.dtype)
    out[:, :, :OH, :OW] = dz.reshape(O, N, OH, OW)
    return out.reshape(O, N * H * W)


def conv_input_grad_stride1(w2: np.ndarray, dz: np.ndarray, N: int, OH: int, OW: int, k: int):
    """col2im(w2.T @ dz) for stride 1, computed with contiguous shifted adds: (C, N, H, W).

    w2 is the (O, C*k*k) weight matrix, dz the (O, N*OH*OW) output gradient; H = OH + k - 1.
    col2im adds k*k slabs whose rows are only OW long, so NumPy spends its time starting short
    inner loops. Here dz is first zero-padded to the input's size (N, H, W): then the column of
    window offset (i, j) lands on the flattened input shifted by i*W + j, the same shift for
    every sample and pixel, so each of the k*k adds is one long contiguous run per channel.
    The padded positions hold zeros, so what they add (even past the end) is nothing.
    (LeNet's second conv: 0.72 ms against 0.96 ms, the 44% wider product included.)
    """
    C = w2.shape[1] // (k * k)
    H, W = OH + k - 1, OW + k - 1
    L = N * H * W
    d = matmul_wide(w2.T, in_corner(dz, N, OH, OW, H, W)).reshape(C, k * k, L)
    out = d[:, 0].copy()
    for i in range(k):
        for j in range(k):
            shift = i * W + j
            if shift:
                out[:, shift:] += d[:, i * k + j, : L - shift]
    return out.reshape(C, N, H, W)


# Stride-1 convolution seen from the output side, for layers with fewer outputs than inputs.
# im2col copies every input value k*k times (C*k*k rows). When O < C it is cheaper to multiply
# first and shift afterwards: with the input zero-padded and flattened to X (C, L), L = N*Hp*Wp,
# the kernel offset (i, j) of every window sits at the same flat shift s = i*Wp + j, so
#   P = Wt @ X, Wt = w as (k*k*O, C) (rows ordered i, j, o):  z[o, l] = sum_ij P[ij, o, l + s_ij]
# (k*k shifted adds of O rows; positions l past the valid OH x OW corner of each image are
# garbage, never read back). The adjoint spreads dz the other way round into D (k*k*O, L),
# D[ij, o, l] = dz[o, l - s_ij], the im2col of dz laid out on the input's grid; then
# dWt = D @ X.T and dX = Wt.T @ D, with no col2im at all. Every array holds O*k*k rows instead
# of C*k*k. Measured per batch of 64, against im2col: the autoencoder's last convolution (16 -> 1
# channels, 28 x 28) forward 9.3 -> 1.8 ms, backward 3.9 -> 1.2 ms; its second (16 -> 8, 14 x 14)
# forward 4.3 -> 1.7 ms, backward 2.6 -> 3.4 ms; the autoencoder's epoch 4.7 -> 3.0 s.


def padded_rows(x: np.ndarray, p: int) -> np.ndarray:
    """x (N, C, H, W) -> X (C, N*Hp*Wp): channels first, each image zero-padded by p, flattened."""
    N, C, H, W = x.shape
    if not p:
        return channels_first(x)
    X = np.zeros((C, N, H + 2 * p, W + 2 * p), dtype=x.dtype)
    X[:, :, p : p + H, p : p + W] = x.transpose(1, 0, 2, 3)
    return X.reshape(C, -1)


def shifted_sum(P: np.ndarray, k: int, Wp: int) -> np.ndarray:
    """z[o, l] = sum_ij P[ij, o, l + s_ij] for P (k*k, O, L), s_ij = i*Wp + j: (O, L)."""
    L = P.shape[2]
    z = P[0].copy()
    for ij in range(1, k * k):
        s = (ij // k) * Wp + ij % k
        z[:, : L - s] += P[ij, :, s:]
    return z


def shifted_spread(dz: np.ndarray, k: int, Wp: int) -> np.ndarray:
    """D[ij, o, l] = dz[o, l - s_ij] (zero for l < s_ij), the adjoint of shifted_sum: (k*k*O, L)."""
    O, L = dz.shape
    D = np.empty((k * k, O, L), dtype=dz.dtype)
    for ij in range(k * k):
        s = (ij // k) * Wp + ij % k
        D[ij, :, :s] = 0
        D[ij, :, s:] = dz[:, : L - s]
    return D.reshape(k * k * O, L)


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> the matrix (C, N*H*W); free when x is a transposed view of (C, N, H, W)."""
    N, C, H, W = x.shape
    return x.transpose(1, 0, 2, 3).reshape(C, N * H * W)


def batch_first(y2: np.ndarray, N: int, H: int, W: int) -> np.ndarray:
    """The matrix (C, N*H*W) -> an NCHW view (N, C, H, W) of the same memory."""
    return y2.reshape(-1, N, H, W).transpose(1, 0, 2, 3)


def zeros_in_layout_of(a: np.ndarray, dtype, empty: bool = False) -> np.ndarray:
    """Zeros shaped like `a` whose memory order follows a's strides (a lazily zeroed np.zeros;
    np.zeros_like would write every byte). Adding an array laid out like `a` into it then streams.
    empty=True skips the zeros, for a caller that writes every element."""
    order = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))
    buf = (np.empty if empty else np.zeros)([a.shape[i] for i in order], dtype=dtype)
    return buf.transpose(np.argsort(order))


def in_layout_of(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """a itself if its axes are ordered in memory as like's are, else a copy of a laid out so.

    Elementwise work on several arrays runs at full speed only when they share a memory order;
    copying one small array into that order first is cheaper than every later pass striding."""
    order = sorted(range(like.ndim), key=lambda i: -abs(like.strides[i]))
    if sorted(range(a.ndim), key=lambda i: -abs(a.strides[i])) == order:
        return a
    out = np.empty([a.shape[i] for i in order], dtype=a.dtype).transpose(np.argsort(order))
    out[...] = a
    return out
