"""Max-pooling kernels behind maxpooling: separable passes and the masks of their winners.

The max over a k x k window is separable: first over the k columns of each window (a row pass,
a[n,c,h,q] = max_j x[n,c,h, s*q+j]), then over its k rows (y[n,c,r,q] = max_i a[n,c, s*r+i, q]).
That takes 2(k-1) elementwise maxima over strided views of the whole batch instead of k*k - 1,
and never loops over samples or pixels. Keeping the first j in the row pass and then the first i
in the column pass picks exactly the row-major first argmax (torch's choice). The gradient runs
the two passes backwards, routing each gradient to the winning row, then to the winning column.
Past timings: benchmarks/README.md, "Kernel notes".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fran.layers._conv import conv_out, in_layout_of, zeros_in_layout_of


class Winners(NamedTuple):
    """What max_pool_grad needs: the passes' inputs and outputs and their first-argmax masks."""

    x: np.ndarray
    rows: np.ndarray  # the row pass's result (N, C, H, OW)
    y: np.ndarray
    win_j: list  # masks of the row pass (column offsets j < k - 1)
    win_i: list  # masks of the column pass (row offsets i < k - 1)
    k: int
    s: int


def max_pool(x: np.ndarray, k: int, s: int, winners: bool = False):
    """(y, Winners or None): y[n,c,r,q] = max_{i,j < k} x[n,c, s*r+i, s*q+j], floor mode."""
    _, _, H, W = x.shape
    OH, OW = conv_out(H, k, s), conv_out(W, k, s)
    rows, win_j = _pass(x, 3, k, s, OW, winners)
    y, win_i = _pass(rows, 2, k, s, OH, winners)
    return y, (Winners(x, rows, y, win_j, win_i, k, s) if winners else None)


def max_pool_grad(dy: np.ndarray, w: Winners) -> np.ndarray:
    """dx: dy routed to each window's first argmax, overlapping windows summed."""
    # dy may come in another memory order than y (from flatten, say); one copy of the small dy
    # into y's order lets both passes stream
    drows = _unpass(in_layout_of(dy, w.y), w.win_i, w.rows, 2, w.k, w.s)
    return _unpass(drows, w.win_j, w.x, 3, w.k, w.s)


def _offset(x, axis, i, s, n):
    """The strided view x[..., i : i + s*n : s, ...] along `axis`: offset i of every window."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(i, i + s * n, s)
    return x[tuple(index)]


def _pass(x, axis, k, s, n, with_arg):
    """Max over the k window offsets along `axis` (n outputs), plus, if asked, boolean masks for
    the first k - 1 offsets marking where that offset is the FIRST maximum (a later tie never
    wins); the last offset wins wherever none of them does, so it needs no mask."""
    best = _offset(x, axis, 0, s, n)
    for i in range(1, k):
        best = np.maximum(best, _offset(x, axis, i, s, n))
    if k == 1:
        best = best.copy()
    if not with_arg:
        return best, None
    masks, taken = [], None
    for i in range(k - 1):
        hit = _offset(x, axis, i, s, n) == best
        if taken is None:
            taken = hit
        else:
            hit &= ~taken  # hit is a fresh array of ours
            taken = taken | hit
        masks.append(hit)
    return best, masks


def _unpass(g, masks, like, axis, k, s):
    """Adjoint of _pass: route g to each window's winning offset, summing overlapping windows.

    Offset i < k - 1 gets g * masks[i]; the last offset gets what is left, g minus those shares
    (exact: at most one share of an element is nonzero, and it equals g), so no last mask is
    formed or read. The result is laid out in memory like `like` (the pass's input), so the
    writes stream. Without overlap (s >= k) each element belongs to one window, so the shares are
    written straight into the result; windows that exactly tile the axis leave nothing to zero."""
    n = g.shape[axis]
    tiled = s == k and n * k == like.shape[axis]
    out = zeros_in_layout_of(like, g.dtype, empty=tiled)
    views = [_offset(out, axis, i, s, n) for i in range(k)]  # views into our fresh buffer
    if s >= k:
        for i in range(k - 1):
            np.multiply(g, masks[i], out=views[i])
        if k == 1:
            np.copyto(views[0], g)
        else:
            np.subtract(g, views[0], out=views[-1])
            for view in views[1:-1]:
                views[-1] -= view
        return out
    rest = g
    for i in range(k - 1):
        share = g * masks[i]
        views[i] += share
        rest = rest - share
    views[-1] += rest
    return out
