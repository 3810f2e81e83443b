"""Batch normalisation's elementwise passes, per channel c of (N, C, P) arrays (P pixels):

scale_shift:  y = (x - mu) a + beta                       (a = gamma / sqrt(var + eps))
input_grad:   dx = dy a - k1 - (x - mu) k2                (training: k1 = a mean dy,
                                                           k2 = a mean(dy (x - mu)) / (var + eps))
The per-channel reductions (means, sums of products) stay NumPy's, in the layer. The references
are the layer's expressions as written (a pass per operation, with temporaries); the twins make
one pass, with the same operations in the same order per element, so bitwise the same.
Both write into np.empty_like(centred): y and dx are laid out like the layer's x (a conv output
is channels-first), strides included, on either backend. The layout is part of the result: the
layer before reads dx with BLAS, whose sums run in an order that depends on it (dx laid out like
dy on one backend and like centred on the other differed by an ulp after a conv's vjp).
"""

from __future__ import annotations

import numpy as np

from fran import kernels

FLOATS = (np.float32, np.float64)


def scale_shift(centred: np.ndarray, a: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """y = centred a + beta per channel (axis 1 of the 3-D centred), laid out like centred."""
    if kernels.compiled() and _alike(centred, a, beta):
        y = _like(centred, centred, a)
        v, axis = _in_memory_order(y)
        if v is not None:
            _scale_shift(_as(centred, axis), a, beta, v, axis)
            return y
    return scale_shift_reference(centred, a, beta)


def scale_shift_reference(centred, a, beta):
    y = np.multiply(centred, a[:, None], out=_like(centred, centred, a))
    y += beta[:, None]
    return y


def input_grad(dy: np.ndarray, centred: np.ndarray, a, k1, k2) -> np.ndarray:
    """dx = dy a - k1 - centred k2 per channel (axis 1 of the 3-D arrays), laid out like centred."""
    if (
        kernels.compiled()
        and _alike(dy, a, k1, k2)
        and _alike(centred, a)
        and dy.shape == centred.shape
    ):
        dx = _like(centred, dy, a)
        v, axis = _in_memory_order(dx)
        if v is not None:  # dy and centred read in dx's memory order, whatever theirs (no copy)
            _input_grad(_as(dy, axis), _as(centred, axis), a, k1, k2, v, axis)
            return dx
    return input_grad_reference(dy, centred, a, k1, k2)


def input_grad_reference(dy, centred, a, k1, k2):
    dx = np.multiply(dy, a[:, None], out=_like(centred, dy, a))
    dx -= k1[:, None]
    dx -= centred * k2[:, None]
    return dx


def _in_memory_order(x):
    """(x as a C-contiguous view, the channel axis in it): (N, C, P) itself, axis 1, or its
    (C, N, P) transpose, axis 0 (a conv output's layout); (None, None) for other layouts."""
    if x.flags.c_contiguous:
        return x, 1
    t = x.transpose(1, 0, 2)
    return (t, 0) if t.flags.c_contiguous else (None, None)


def _like(centred, *operands):
    """An empty array laid out like centred, of the dtype NumPy gives the operands' product."""
    return np.empty_like(centred, dtype=np.result_type(*operands))


def _as(x, axis):
    """x viewed with its axes in the order _in_memory_order gave (any strides: read in place)."""
    return x if axis == 1 else x.transpose(1, 0, 2)


def _alike(x, *per_channel) -> bool:
    return (
        x.ndim == 3
        and x.dtype in FLOATS
        and all(v.shape == (x.shape[1],) and v.dtype == x.dtype for v in per_channel)
    )


@kernels.jit
def _scale_shift(c, a, beta, y, axis):
    I, J, P = c.shape
    for i in range(I):
        for j in range(J):
            ch = j if axis == 1 else i
            ai, bi = a[ch], beta[ch]
            for p in range(P):
                y[i, j, p] = c[i, j, p] * ai + bi


@kernels.jit
def _input_grad(dy, c, a, k1, k2, dx, axis):
    I, J, P = dy.shape
    for i in range(I):
        for j in range(J):
            ch = j if axis == 1 else i
            ai, k1i, k2i = a[ch], k1[ch], k2[ch]
            for p in range(P):
                dx[i, j, p] = dy[i, j, p] * ai - k1i - c[i, j, p] * k2i
