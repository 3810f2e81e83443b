"""Flatten: (N, C, H, W) -> (N, C*H*W) in row-major (C, H, W) order, as torch's flatten(1).

vjp: dx = dy.reshape(x.shape). Params: {}.
"""

from __future__ import annotations

import math

import attrs

from fran import registry


@attrs.frozen
class flatten:
    pass


def output_shape(spec, shape):
    return (math.prod(shape),)


def apply(spec, params, x):
    return x.reshape(x.shape[0], -1)


def vjp(spec, params, x):
    def pullback(dy):
        return {}, dy.reshape(x.shape)

    return apply(spec, params, x), pullback


registry.register(
    "flatten", flatten, output_shape=output_shape, apply=apply, vjp=vjp, per_sample=True
)
