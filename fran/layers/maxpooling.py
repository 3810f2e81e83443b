"""Max pooling over k x k windows with a stride (default k); floor mode, so ragged edges drop.

forward: y[n,c,r,q] = max_{i,j < k} x[n,c, s*r+i, s*q+j]
vjp: dx[n,c, s*r+i, s*q+j] += dy[n,c,r,q] at the window's first argmax (i, j) in row-major order,
as torch does; overlapping windows (s < k) accumulate.
Params: {}.

The max is separable: first over the k columns of each window (a row pass giving
a[n,c,h,q] = max_j x[n,c,h, s*q+j]), then over its k rows (y[n,c,r,q] = max_i a[n,c, s*r+i, q]).
That takes 2(k-1) elementwise maxima over strided views of the whole batch instead of k*k - 1,
and never loops over samples or pixels. Keeping the first j in the row pass and then the first i
in the column pass picks exactly the row-major first argmax. The pullback runs the two passes
backwards, routing each gradient to the winning row, then to the winning column.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._im2col import conv_out, in_layout_of, zeros_in_layout_of
from fran.layers._validators import compact_repr, optional_positive_int, positive_int


@attrs.frozen
class maxpooling:
    """Max over k x k windows moved by `stride` (None: k); floor mode."""

    __repr__ = compact_repr
    k: int = attrs.field(validator=positive_int)
    stride: int | None = attrs.field(default=None, validator=optional_positive_int)

    @property
    def s(self) -> int:
        return self.k if self.stride is None else self.stride


def output_shape(spec, shape):
    if len(shape) != 3:
        raise ValueError(
            f"{spec!r}: expects a (channels, height, width) sample, got shape {tuple(shape)}"
        )
    C, H, W = shape
    if H < spec.k or W < spec.k:
        raise ValueError(f"{spec!r}: input of height x width {H} x {W} is smaller than the window")
    return (C, conv_out(H, spec.k, spec.s), conv_out(W, spec.k, spec.s))


def init(spec, shape, rng):
    return {}


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
    formed or read (backward of the Fashion-MNIST CNN's first pooling 1.22 -> 0.91 ms per 32
    images). The result is laid out in memory like `like` (the pass's input), so the writes
    stream. Without overlap (s >= k) each element belongs to one window, so the shares are
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


def apply(spec, params, x):
    _, _, H, W = x.shape
    OH, OW = conv_out(H, spec.k, spec.s), conv_out(W, spec.k, spec.s)
    rows, _ = _pass(x, 3, spec.k, spec.s, OW, False)
    return _pass(rows, 2, spec.k, spec.s, OH, False)[0]


def vjp(spec, params, x):
    _, _, H, W = x.shape
    k, s = spec.k, spec.s
    OH, OW = conv_out(H, k, s), conv_out(W, k, s)
    rows, win_j = _pass(x, 3, k, s, OW, True)
    y, win_i = _pass(rows, 2, k, s, OH, True)

    def pullback(dy):
        # dy may arrive in another memory order than y (from flatten, say: NCHW while y is laid
        # out channels first); one copy of the small dy into y's order lets both passes stream
        # (LeNet's second pooling, fed by flatten: 0.8 ms -> 0.4 ms per batch of 64)
        drows = _unpass(in_layout_of(dy, y), win_i, rows, 2, k, s)
        return {}, _unpass(drows, win_j, x, 3, k, s)

    return y, pullback


registry.register(
    "maxpooling", maxpooling, output_shape=output_shape, init=init, apply=apply, vjp=vjp
)
