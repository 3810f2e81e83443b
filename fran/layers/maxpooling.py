"""Max pooling over k x k windows with a stride (default k); floor mode, so ragged edges drop.

forward: y[n,c,r,q] = max_{i,j < k} x[n,c, s*r+i, s*q+j]
vjp: dx[n,c, s*r+i, s*q+j] += dy[n,c,r,q] where (i, j) is the window's first argmax
(ties go to the first maximum in row-major order, as in torch; overlapping windows accumulate).
Params: {}. The loops below run over the k*k offsets of a window, each step touching the whole
batch through a strided view, so no Python loop ever visits a sample or a pixel.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._im2col import conv_out
from fran.layers._validators import optional_positive_int, positive_int


@attrs.frozen
class maxpooling:
    k: int = attrs.field(validator=positive_int)
    stride: int | None = attrs.field(default=None, validator=optional_positive_int)

    @property
    def s(self) -> int:
        return self.k if self.stride is None else self.stride


def output_shape(spec, shape):
    if len(shape) != 3:
        raise ValueError(f"{spec!r}: expects a (channels, height, width) sample, got shape {tuple(shape)}")
    C, H, W = shape
    if H < spec.k or W < spec.k:
        raise ValueError(f"{spec!r}: input of height x width {H} x {W} is smaller than the window")
    return (C, conv_out(H, spec.k, spec.s), conv_out(W, spec.k, spec.s))


def init(spec, shape, rng):
    return {}


def _offsets(spec, x):
    """The k*k strided views x[:, :, i::s, j::s] cut to the output size, one per window offset."""
    _, _, H, W = x.shape
    k, s = spec.k, spec.s
    OH, OW = conv_out(H, k, s), conv_out(W, k, s)
    return [x[:, :, i : i + s * OH : s, j : j + s * OW : s] for i in range(k) for j in range(k)]


def apply(spec, params, x):
    views = _offsets(spec, x)
    y = views[0]
    for v in views[1:]:
        y = np.maximum(y, v)
    return y if len(views) > 1 else y.copy()


def vjp(spec, params, x):
    views = _offsets(spec, x)
    y, arg = views[0], np.zeros(views[0].shape, dtype=np.int8 if len(views) < 128 else np.int32)
    for p, v in enumerate(views[1:], start=1):
        better = v > y  # strict: an equal later value does not steal the first maximum
        y = np.maximum(y, v)
        np.copyto(arg, p, where=better)  # arg is our own fresh buffer
    if len(views) == 1:
        y = y.copy()

    def pullback(dy):
        dx = np.zeros(x.shape, dtype=dy.dtype)
        k, s = spec.k, spec.s
        _, _, OH, OW = dy.shape
        for p in range(k * k):
            i, j = divmod(p, k)
            dx[:, :, i : i + s * OH : s, j : j + s * OW : s] += np.where(arg == p, dy, 0)
        return {}, dx

    return y, pullback


registry.register("maxpooling", maxpooling, output_shape=output_shape, init=init, apply=apply, vjp=vjp)
