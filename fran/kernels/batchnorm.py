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
        y = np.empty_like(centred)
        _scale_shift(centred, a, beta, y)
        return y
    return scale_shift_reference(centred, a, beta)


def scale_shift_reference(centred, a, beta):
    y = centred * a[:, None]
    y += beta[:, None]
    return y


def input_grad(dy: np.ndarray, centred: np.ndarray, a, k1, k2) -> np.ndarray:
    """dx = dy a - k1 - centred k2 per channel (axis 1 of the 3-D arrays), laid out like dy."""
    if kernels.compiled() and _alike(dy, a, k1, k2) and centred.dtype == dy.dtype:
        dx = np.empty_like(dy)
        _input_grad(dy, centred, a, k1, k2, dx)
        return dx
    return input_grad_reference(dy, centred, a, k1, k2)


def input_grad_reference(dy, centred, a, k1, k2):
    dx = dy * a[:, None]
    dx -= k1[:, None]
    dx -= centred * k2[:, None]
    return dx


def _alike(x, *per_channel) -> bool:
    return (
        x.ndim == 3
        and x.dtype in FLOATS
        and all(v.shape == (x.shape[1],) and v.dtype == x.dtype for v in per_channel)
    )


@kernels.jit
def _scale_shift(c, a, beta, y):
    N, C, P = c.shape
    for n in range(N):
        for ch in range(C):
            for p in range(P):
                y[n, ch, p] = c[n, ch, p] * a[ch] + beta[ch]


@kernels.jit
def _input_grad(dy, c, a, k1, k2, dx):
    N, C, P = dy.shape
    for n in range(N):
        for ch in range(C):
            for p in range(P):
                dx[n, ch, p] = dy[n, ch, p] * a[ch] - k1[ch] - c[n, ch, p] * k2[ch]
