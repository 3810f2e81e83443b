"""Max pooling and its gradient: y[p,r,q] = max_{i,j<k} x[p, s*r+i, s*q+j] for every image plane
p = (n, c), with the window's first argmax in row-major order (torch's choice); the gradient adds
dy[p,r,q] into dx at that argmax (overlapping windows accumulate).

Reference: fran.layers._pool (separable passes of NumPy maxima over the whole batch, a row pass
then a column pass, with boolean masks of each pass's first winner). Compiled twin, for 2 x 2
windows with stride 2 (every network here; other windows run the reference): one loop over the
windows of each plane doing the reference's own three maxima per window (np.maximum's rule:
a > b or a is NaN keeps a, else b) and keeping its three masks as bits of one byte; the gradient
writes all four entries of each window with the reference's arithmetic on those masks. Both are
bitwise the reference's, signed zeros and NaN included. Planes are taken in x's memory order
(conv outputs are channels-first), so nothing is copied.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fran import kernels
from fran.layers import _pool as reference


class Argmax(NamedTuple):
    """What max_pool_grad needs from the compiled forward."""

    masks: np.ndarray  # (P, OH, OW) uint8: bit 0 row 1 wins, bits 1, 2 column 0 wins in row 0, 1
    shape: tuple  # x's (N, C, H, W)
    channels_first: bool  # planes ordered (c, n), as conv2d lays out its output


def max_pool(x: np.ndarray, k: int, s: int, winners: bool = False):
    """(y, what max_pool_grad needs, or None): y = max over k x k windows moved by s, floor mode."""
    if not (k == s == 2 and kernels.compiled() and _fits(x)):
        return reference.max_pool(x, k, s, winners)
    N, C, H, W = x.shape
    planes, cf = _planes(x)
    y = np.empty((planes.shape[0], H // 2, W // 2), dtype=x.dtype)
    masks = np.empty(y.shape if winners else (0, 0, 0), dtype=np.uint8)
    _max_pool_2x2(planes, y, masks, winners)
    return _nchw(y, N, C, cf), (Argmax(masks, x.shape, cf) if winners else None)


def max_pool_grad(dy: np.ndarray, w) -> np.ndarray:
    """dx: dy routed to each window's first argmax, overlapping windows summed."""
    if isinstance(w, reference.Winners):
        return reference.max_pool_grad(dy, w)
    N, C, H, W = w.shape
    P, OH, OW = w.masks.shape
    d = np.ascontiguousarray(dy.transpose(1, 0, 2, 3) if w.channels_first else dy)
    tiled = H == 2 * OH and W == 2 * OW  # else the ragged edge stays zero
    dx = (np.empty if tiled else np.zeros)((P, H, W), dtype=d.dtype)
    _max_pool_2x2_grad(d.reshape(P, OH, OW), w.masks, dx)
    return _nchw(dx, N, C, w.channels_first)


def _fits(x) -> bool:
    return x.ndim == 4 and x.dtype in (np.float32, np.float64)


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
def _max_pool_2x2(x, y, masks, winners):
    P, OH, OW = y.shape
    for p in range(P):
        for r in range(OH):
            top, bottom = x[p, 2 * r], x[p, 2 * r + 1]
            for q in range(OW):
                a0, a1, b0, b1 = top[2 * q], top[2 * q + 1], bottom[2 * q], bottom[2 * q + 1]
                m0 = a0 if (a0 > a1 or a0 != a0) else a1  # the row pass, as np.maximum
                m1 = b0 if (b0 > b1 or b0 != b0) else b1
                best = m0 if (m0 > m1 or m0 != m0) else m1  # the column pass
                y[p, r, q] = best
                if winners:  # the reference's masks: first hits of x == its pass's maximum
                    masks[p, r, q] = (m0 != best) | ((a0 == m0) << 1) | ((b0 == m1) << 2)


@kernels.jit
def _max_pool_2x2_grad(dy, masks, dx):
    P, OH, OW = dy.shape
    for p in range(P):
        for r in range(OH):
            for q in range(OW):
                g, m = dy[p, r, q], masks[p, r, q]
                d0 = g * (0 if m & 1 else 1)  # the column pass backwards: row 0's share
                d1 = g - d0  # row 1 gets the rest
                e = d0 * (1 if m & 2 else 0)  # then each row's share to its winning column
                dx[p, 2 * r, 2 * q], dx[p, 2 * r, 2 * q + 1] = e, d0 - e
                e = d1 * (1 if m & 4 else 0)
                dx[p, 2 * r + 1, 2 * q], dx[p, 2 * r + 1, 2 * q + 1] = e, d1 - e
