"""Convolution kernels behind conv2d and conv2d_transpose (and layout helpers for maxpooling).

The layers call four functions; a correlation of x (N, C, H, W) with w (O, C, k, k) is:
    tape = lay_out(x, w, stride, padding)   x arranged for one matrix product (kept for the vjp)
    z = correlate(tape, b)                  z (O, N*OH*OW) = w (*) x + b
    dw, dx = correlate_vjp(tape, dz)        its weight and input gradients for dz (O, N*OH*OW)
    correlate_input_grad(dz, w, ...)        dx alone: the transposed convolution of dz
conv2d's forward is correlate and its backward correlate_vjp; conv2d_transpose's forward is
correlate_input_grad and its backward correlate (dx) and correlate_vjp (dw only).

Two layouts of x. im2col turns every k x k window into one column, (C*k*k, N*OH*OW), ordered
(channel, ki, kj) x (sample, out_row, out_col), so that `w (O, C*k*k) @ cols` is already laid
out as (O, N, OH, OW): the NCHW result is a free transposed view, which the next layer's im2col
reads directly; col2im is its adjoint. For stride 1 with fewer outputs than inputs (O < C) the
output side is cheaper: multiply first, then add k*k shifted slices (see padded_rows below).
Products with these wide matrices run in column blocks (fran/layers/_gemm.py). 3x3 stride-1
layers with many channels take Winograd's F(2x2, 3x3) instead (_winograd, the rule in pays()).
Layers with few channels take the compiled implicit GEMM where it is available (fran.kernels.conv:
im2col's blocks made and multiplied in cache, never the whole matrix; the rule in implicit()):
the same products in the same order, so bitwise the im2col path.
plain=True keeps whole products and im2col/col2im only (conv2d_transpose's own path).
Past timings of these choices: benchmarks/README.md, "Kernel notes".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fran.kernels import conv as conv_kernels
from fran.kernels import epilogue
from fran.layers import _gemm, _winograd
from fran.layers._gemm import matmul_wide, matmul_wide_t


def conv_out(size: int, k: int, stride: int, pad: int = 0) -> int:
    """Output length of a k-window sliding with `stride` over `size` zero-padded by `pad` (floor)."""
    return (size + 2 * pad - k) // stride + 1


class Tape(NamedTuple):
    """x laid out for a correlation with w: im2col columns, or (output side) X and Wt."""

    w: np.ndarray
    stride: int
    padding: int
    plain: bool
    x_shape: tuple  # (N, C, H, W)
    out: tuple  # (OH, OW)
    cols: np.ndarray | None  # im2col(x) (C*k*k, N*OH*OW), or None (output side, Winograd)
    X: np.ndarray | None = None  # padded_rows(x) (C, N*Hp*Wp), output side only
    wt: np.ndarray | None = None  # w as (k*k*O, C), rows ordered (i, j, o), output side only
    wino: _winograd.Wino | None = None  # Winograd's transformed tiles (3x3, stride 1) instead
    x: np.ndarray | None = None  # x itself for the implicit GEMM (its im2col made block by block)

    def as_nchw(self, z2: np.ndarray) -> np.ndarray:
        """A result matrix (O, N*OH*OW) as an NCHW view (N, O, OH, OW)."""
        return batch_first(z2, self.x_shape[0], *self.out)


def lay_out(x, w, stride: int, padding: int, plain: bool = False) -> Tape:
    """x (N, C, H, W) arranged for the products with w (O, C, k, k): the output side for stride 1
    with O < C (fewer rows to copy), else im2col; for 3x3 stride 1 Winograd's tiles where it pays."""
    N, C, H, W = x.shape
    O, _, k, _ = w.shape
    out = (conv_out(H, k, stride, padding), conv_out(W, k, stride, padding))
    if not plain and stride == 1 and k == 3 and _winograd.pays(C, O, *out):
        wino = _winograd.lay_out(x, w, padding)
        return Tape(w, stride, padding, plain, x.shape, out, None, wino=wino)
    if not plain and stride == 1 and O < C:
        wt = w.transpose(2, 3, 0, 1).reshape(k * k * O, C)
        return Tape(w, stride, padding, plain, x.shape, out, None, padded_rows(x, padding), wt)
    if not plain and implicit(x.dtype, O, k, C * k * k, N, out):
        return Tape(w, stride, padding, plain, x.shape, out, None, x=x)
    return Tape(w, stride, padding, plain, x.shape, out, im2col(x, k, stride, padding))


IMPLICIT_KERNELS = (3,)  # k x k sizes that take it
IMPLICIT_MIN_OUTPUTS = 16  # channels out, at least (fewer: the products are too thin to gain)
IMPLICIT_MIN_PIXELS = 196  # output pixels per image, at least (LeNet's 10 x 10 maps lose)


def implicit(dtype, O: int, k: int, K: int, N: int, out: tuple) -> bool:
    """Whether an im2col layer's products take the implicit GEMM: compiled kernels on, a small
    weight matrix (O, K = C*k*k), which _gemm multiplies in column blocks, and a 3x3 layer of
    the sizes where it measured faster (benchmarks/conv_shapes.py; 1x1 and 5x5 layers lost)."""
    n = N * out[0] * out[1]
    return (
        k in IMPLICIT_KERNELS
        and O >= IMPLICIT_MIN_OUTPUTS
        and out[0] * out[1] >= IMPLICIT_MIN_PIXELS
        and _gemm.implicit_fits(O, K, n, np.dtype(dtype).itemsize)
        and conv_kernels.available(dtype)
    )


def correlate(tape: Tape, b=None) -> np.ndarray:
    """z (O, N*OH*OW): z[o, (n, r, q)] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c, s*r+i, s*q+j]."""
    O, k = tape.w.shape[0], tape.w.shape[2]
    if tape.wino is not None:
        return _winograd.correlate(tape.wino, b)
    if tape.cols is not None or tape.x is not None:
        if tape.x is not None:
            w2 = np.ascontiguousarray(tape.w.reshape(O, -1))
            z = _gemm.implicit_correlate(tape.x, w2, k, tape.stride, tape.padding, tape.out)
        else:
            z = (np.matmul if tape.plain else matmul_wide)(tape.w.reshape(O, -1), tape.cols)
        if b is not None:
            z += b.reshape(O, 1)
        return z
    N, _, H, W = tape.x_shape
    (OH, OW), p = tape.out, tape.padding
    Hp, Wp = H + 2 * p, W + 2 * p
    P = matmul_wide(tape.wt, tape.X).reshape(k * k, O, -1)
    z = shifted_sum(P, k, Wp).reshape(O, N, Hp, Wp)[:, :, :OH, :OW]
    z = np.ascontiguousarray(z) if b is None else z + b.reshape(O, 1, 1, 1)  # compact
    return z.reshape(O, -1)


def correlate_act(tape: Tape, b, activation: str):
    """(z, y): z = correlate(tape, b) and y = act(z); on the im2col path the bias and the
    activation run in one pass over the product (fran.kernels.epilogue)."""
    if tape.cols is not None or tape.x is not None:
        return epilogue.bias_act(correlate(tape), b, activation)
    return epilogue.bias_act(correlate(tape, b), None, activation)


def correlate_vjp(tape: Tape, dz: np.ndarray, input_grad: bool = True):
    """(dw, dx) for the output gradient dz (O, N*OH*OW): dw like w, dx channels first
    (C, N, H, W), or None when not input_grad."""
    N, C, H, W = tape.x_shape
    (OH, OW), p = tape.out, tape.padding
    O, k = tape.w.shape[0], tape.w.shape[2]
    if tape.wino is not None:
        return _winograd.correlate_vjp(tape.wino, dz, input_grad)
    if tape.x is not None:
        return _implicit_vjp(tape, np.ascontiguousarray(dz), input_grad)
    if tape.cols is not None:
        product_t = (lambda a, b: a @ b.T) if tape.plain else matmul_wide_t
        dw = product_t(dz, tape.cols).reshape(tape.w.shape)
        if not input_grad:
            return dw, None
        dz4 = dz.reshape(O, N, OH, OW)
        return dw, correlate_input_grad(dz4, tape.w, tape.stride, p, (H, W), tape.plain)
    Hp, Wp = H + 2 * p, W + 2 * p
    D = shifted_spread(in_corner(dz, N, OH, OW, Hp, Wp), k, Wp)
    dwt = matmul_wide_t(D, tape.X).reshape(k, k, O, C)
    dw = np.ascontiguousarray(dwt.transpose(2, 3, 0, 1))
    if not input_grad:
        return dw, None
    return dw, matmul_wide(tape.wt.T, D).reshape(C, N, Hp, Wp)[:, :, p : p + H, p : p + W]


def _implicit_vjp(tape: Tape, dz: np.ndarray, input_grad: bool):
    """correlate_vjp's im2col branch on the implicit GEMM (dx of stride > 1: the reference)."""
    N, C, H, W = tape.x_shape
    s, p, (OH, OW) = tape.stride, tape.padding, tape.out
    O, k = tape.w.shape[0], tape.w.shape[2]
    dw = _gemm.implicit_weight_grad(tape.x, dz, k, s, p, tape.out, C * k * k)
    if not input_grad:
        return dw.reshape(tape.w.shape), None
    full, size = None, (H + 2 * p, W + 2 * p)
    if s == 1:
        w2 = np.ascontiguousarray(tape.w.reshape(O, -1))
        full = _gemm.implicit_input_grad_stride1(w2, dz, k, size, N)
    if full is None:
        dz4 = dz.reshape(O, N, OH, OW)
        return dw.reshape(tape.w.shape), correlate_input_grad(dz4, tape.w, s, p, (H, W))
    return dw.reshape(tape.w.shape), full.reshape(C, N, *size)[:, :, p : p + H, p : p + W]


def correlate_input_grad(dz, w, stride: int, padding: int, size: tuple, plain: bool = False):
    """The adjoint of correlate in x: dz (O, N, OH, OW) -> dx (C, N, H, W) for size = (H, W),
    i.e. col2im(w2.T @ dz) cropped by the padding (a transposed convolution of dz)."""
    O, N, OH, OW = dz.shape
    C, k, p = w.shape[1], w.shape[2], padding
    w2, dz2 = w.reshape(O, -1), dz.reshape(O, -1)
    H, W = size
    if stride == 1 and not plain:  # the same sums in long contiguous adds (faster)
        full = conv_input_grad_stride1(w2, dz2, N, OH, OW, k)
    else:
        product = np.matmul if plain else matmul_wide
        full = col2im(product(w2.T, dz2), C, N, OH, OW, k, stride, H + 2 * p, W + 2 * p)
    return full[:, :, p : p + H, p : p + W]


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
# of C*k*k.


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
