"""Max pooling over k x k windows with a stride (default k); floor mode, so ragged edges drop.

forward: y[n,c,r,q] = max_{i,j < k} x[n,c, s*r+i, s*q+j]
vjp: dx[n,c, s*r+i, s*q+j] += dy[n,c,r,q] at the window's first argmax (i, j) in row-major order,
as torch does; overlapping windows (s < k) accumulate.
Params: {}. Kernels (fran.kernels.pool): max_pool computes y and, for the vjp, each window's first
argmax; max_pool_grad routes dy through them.
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.kernels import pool
from fran.layers._conv import conv_out
from fran.layers._repr import compact_repr
from fran.validate import image_sample, optional_positive_int, positive_int


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
    C, H, W = image_sample(spec, shape)
    if H < spec.k or W < spec.k:
        raise ValueError(f"{spec!r}: input of height x width {H} x {W} is smaller than the window")
    return (C, conv_out(H, spec.k, spec.s), conv_out(W, spec.k, spec.s))


def apply(spec, params, x):
    return pool.max_pool(x, spec.k, spec.s)[0]


def vjp(spec, params, x):
    y, winners = pool.max_pool(x, spec.k, spec.s, winners=True)

    def pullback(dy):
        return {}, pool.max_pool_grad(dy, winners)

    return y, pullback


registry.register(
    "maxpooling", maxpooling, output_shape=output_shape, apply=apply, vjp=vjp, per_sample=True
)
