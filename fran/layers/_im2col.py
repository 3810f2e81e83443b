"""Patches-times-weights convolution helpers, shared by conv2d, conv2d_transpose and maxpooling.

im2col turns every k x k window of a batch into one column of a matrix, so that a convolution is a
single BLAS matrix product; col2im is its adjoint (it adds every column back onto its window).
Layout: the columns are ordered (channel, ki, kj) x (sample, out_row, out_col), i.e. shape
(C*k*k, N*OH*OW). Putting the channel axis first and the batch axis second means the product
`w (O, C*k*k) @ cols` is already laid out as (O, N, OH, OW): the NCHW result is a free transposed
view of it, and the next layer's im2col reads that view directly, with no copy in between.
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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Adjoint of im2col without padding: cols (C*k*k, N*OH*OW) -> (C, N, H, W), summing overlaps.

    The loop runs over the k*k kernel offsets only; each step adds one strided slab of the whole
    batch, so overlapping windows (stride < k) accumulate correctly. `out`, if given, is a zeroed
    (C, N, H, W) array (or view) of ours to add into.
    """
    cols = cols.reshape(C, k, k, N, OH, OW)
    if out is None:
        out = np.zeros((C, N, H, W), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i : i + stride * OH : stride, j : j + stride * OW : stride] += cols[:, i, j]
    return out


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
