"""Max pooling and its gradient: y[p,r,q] = max_{i,j<k} x[p, s*r+i, s*q+j] for every image plane
p = (n, c), with the window's first argmax in row-major order (torch's choice); the gradient adds
dy[p,r,q] into dx at that argmax (overlapping windows accumulate).

Reference: fran.layers._pool (separable passes of NumPy maxima over the whole batch, with boolean
masks of each pass's winners). Compiled twin: one loop over the windows of each plane writing y
and the argmax's flat offset in its plane (int32), and a scatter of dy by those offsets; planes
are taken in x's memory order (conv outputs are channels-first), so nothing is copied.
y is bitwise the reference's (maxima are exact, NaN propagates as np.maximum does); dx too when
windows do not overlap, else equal to rounding (the overlapping shares are added in another order).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fran import kernels
from fran.layers import _pool as reference


class Argmax(NamedTuple):
    """What max_pool_grad needs from the compiled forward."""

    at: np.ndarray  # (P, OH, OW) flat offset h*W + w of each window's first maximum in its plane
    shape: tuple  # x's (N, C, H, W)
    channels_first: bool  # planes ordered (c, n), as conv2d lays out its output


def max_pool(x: np.ndarray, k: int, s: int, winners: bool = False):
    """(y, what max_pool_grad needs, or None): y = max over k x k windows moved by s, floor mode."""
    if not (kernels.compiled() and _fits(x)):
        return reference.max_pool(x, k, s, winners)
    N, C, H, W = x.shape
    planes, cf = _planes(x)
    OH, OW = (H - k) // s + 1, (W - k) // s + 1
    y = np.empty((planes.shape[0], OH, OW), dtype=x.dtype)
    at = np.empty((planes.shape[0], OH, OW) if winners else (0, 0, 0), dtype=np.int32)
    _max_pool_planes(planes, k, s, y, at, winners)
    return _nchw(y, N, C, cf), (Argmax(at, x.shape, cf) if winners else None)


def max_pool_grad(dy: np.ndarray, w) -> np.ndarray:
    """dx: dy routed to each window's first argmax, overlapping windows summed."""
    if isinstance(w, reference.Winners):
        return reference.max_pool_grad(dy, w)
    N, C, H, W = w.shape
    P, OH, OW = w.at.shape
    d = dy.transpose(1, 0, 2, 3) if w.channels_first else dy
    d = np.ascontiguousarray(d, dtype=np.result_type(dy)).reshape(P, OH * OW)
    dx = np.zeros((P, H * W), dtype=d.dtype)
    _max_pool_grad_planes(d, w.at.reshape(P, OH * OW), dx)
    return _nchw(dx.reshape(P, H, W), N, C, w.channels_first)


def _fits(x) -> bool:
    return x.ndim == 4 and x.dtype in (np.float32, np.float64) and x.shape[2] * x.shape[3] < 2**31


def _planes(x):
    """x (N, C, H, W) as C-contiguous planes (P, H, W) without a copy where its memory allows,
    and whether they are ordered channels first."""
    N, C, H, W = x.shape
    t = x.transpose(1, 0, 2, 3)
    if t.flags.c_contiguous and not x.flags.c_contiguous:
        return t.reshape(C * N, H, W), True
    return np.ascontiguousarray(x).reshape(N * C, H, W), False


def _nchw(planes, N, C, channels_first):
    _, H, W = planes.shape
    if channels_first:
        return planes.reshape(C, N, H, W).transpose(1, 0, 2, 3)
    return planes.reshape(N, C, H, W)


@kernels.jit
def _max_pool_planes(x, k, s, y, at, winners):
    P, _, W = x.shape
    _, OH, OW = y.shape
    for p in range(P):
        for r in range(OH):
            for q in range(OW):
                h0, w0 = s * r, s * q
                best, where = x[p, h0, w0], h0 * W + w0
                for i in range(k):
                    for j in range(k):
                        v = x[p, h0 + i, w0 + j]
                        if v > best or (v != v and best == best):  # a NaN wins, as in np.maximum
                            best, where = v, (h0 + i) * W + w0 + j
                y[p, r, q] = best
                if winners:
                    at[p, r, q] = where


@kernels.jit
def _max_pool_grad_planes(dy, at, dx):
    P, L = dy.shape
    for p in range(P):
        for t in range(L):
            dx[p, at[p, t]] += dy[p, t]
