"""Layer normalisation over the last axis, as torch.nn.LayerNorm(C, eps) (elementwise affine):

mu = mean_c x,  var = mean_c (x - mu)^2 (biased),  xh = (x - mu) / sqrt(var + eps),  y = w xh + b
vjp (g = w dy, means over the last axis):
    dx = (g - mean g - xh mean(g xh)) / sqrt(var + eps),  dw = sum dy xh,  db = sum dy
(the sums over every axis but the last). The same in training and inference: each sample's own
statistics. Works on any sample shape: (C,), (T, C), ... Params: {"w": ones(C), "b": zeros(C)}.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._repr import compact_repr
from fran.validate import positive


@attrs.frozen
class layernorm:
    """Normalises each position's features to mean 0, variance 1, then scales and shifts."""

    __repr__ = compact_repr
    eps: float = attrs.field(default=1e-5, validator=positive)


def output_shape(spec, shape):
    return tuple(shape)


def init(spec, shape, rng):
    return {"w": np.ones(shape[-1]), "b": np.zeros(shape[-1])}


def _normalise(spec, x):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + np.asarray(spec.eps, x.dtype))
    return (x - mu) * inv, inv


def apply(spec, params, x):
    return _normalise(spec, x)[0] * params["w"] + params["b"]


def vjp(spec, params, x):
    xh, inv = _normalise(spec, x)
    axes = tuple(range(x.ndim - 1))

    def pullback(dy, input_grad=True):
        grads = {"w": (dy * xh).sum(axis=axes), "b": dy.sum(axis=axes)}
        if not input_grad:
            return grads, None
        g = dy * params["w"]
        mean_g = g.mean(axis=-1, keepdims=True)
        mean_gxh = (g * xh).mean(axis=-1, keepdims=True)
        return grads, (g - mean_g - xh * mean_gxh) * inv

    return xh * params["w"] + params["b"], pullback


registry.register(
    "layernorm",
    layernorm,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
