"""Batch normalisation's elementwise passes, per channel c of (N, C, P) arrays (P pixels):

scale_shift:  y = (x - mu) a + beta                       (a = gamma / sqrt(var + eps))
input_grad:   dx = dy a - k1 - (x - mu) k2                (training: k1 = a mean dy,
                                                           k2 = a mean(dy (x - mu)) / (var + eps))
The per-channel reductions (means, sums of products) stay NumPy's, in the layer. The references
are the layer's expressions as written (a pass per operation, with temporaries); the twins make
one pass, with the same operations in the same order per element, so bitwise the same.
"""

from __future__ import annotations

import numpy as np

from fran import kernels

FLOATS = (np.float32, np.float64)


def scale_shift(centred: np.ndarray, a: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """y = centred a + beta per channel (axis 1 of the 3-D centred), laid out like centred."""
    if kernels.compiled() and _alike(centred, a, beta):
        c, axis = _in_memory_order(centred)
        if c is not None:
            y = np.empty_like(c)
            _scale_shift(c, a, beta, y, axis)
            return y if axis == 1 else y.transpose(1, 0, 2)
    return scale_shift_reference(centred, a, beta)


def scale_shift_reference(centred, a, beta):
    y = centred * a[:, None]
    y += beta[:, None]
    return y


def input_grad(dy: np.ndarray, centred: np.ndarray, a, k1, k2) -> np.ndarray:
    """dx = dy a - k1 - centred k2 per channel (axis 1 of the 3-D arrays), laid out like centred."""
    if kernels.compiled() and _alike(dy, a, k1, k2) and centred.dtype == dy.dtype:
        c, axis = _in_memory_order(centred)
        if c is not None:  # dy in centred's memory order (one copy if it came in another)
            d = np.ascontiguousarray(dy if axis == 1 else dy.transpose(1, 0, 2))
            dx = np.empty_like(d)
            _input_grad(d, c, a, k1, k2, dx, axis)
            return dx if axis == 1 else dx.transpose(1, 0, 2)
    return input_grad_reference(dy, centred, a, k1, k2)


def input_grad_reference(dy, centred, a, k1, k2):
    dx = dy * a[:, None]
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
