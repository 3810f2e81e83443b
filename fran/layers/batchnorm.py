"""Batch normalisation, as torch's BatchNorm2d on (C, H, W) samples and BatchNorm1d on (F,):
per channel c, over the batch (and the pixels),

training:  mu = mean x,  var = mean (x - mu)^2 (biased),  xh = (x - mu) / sqrt(var + eps),
           y = gamma xh + beta;  running mean <- (1 - m) mean + m mu,
           running var <- (1 - m) var_r + m var n / (n - 1)   (unbiased, torch's momentum m)
inference: xh = (x - mean_r) / sqrt(var_r + eps),  y = gamma xh + beta

vjp (training, n values per channel, g = gamma dy):
    dx = (g - mean g - xh mean(g xh)) / sqrt(var + eps),  dgamma = sum dy xh,  dbeta = sum dy
vjp (inference): dx = g / sqrt(var_r + eps), the same dgamma and dbeta.
Params: {"gamma": ones(C), "beta": zeros(C)}; state: {"mean": zeros(C), "var": ones(C)}.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._validators import compact_repr


def _momentum(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
        raise ValueError(f"batchnorm: momentum must be a number in [0, 1], got {value!r}")


def _eps(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"batchnorm: eps must be a number > 0, got {value!r}")


@attrs.frozen
class batchnorm:
    """Normalises each channel (or feature) by batch statistics in training, running ones after."""

    __repr__ = compact_repr

    momentum: float = attrs.field(default=0.1, validator=_momentum)
    eps: float = attrs.field(default=1e-5, validator=_eps)


def output_shape(spec, shape):
    if len(shape) not in (1, 3):
        raise ValueError(f"{spec!r}: expects (C, H, W) or (F,) samples, got shape {tuple(shape)}")
    return tuple(shape)


def init(spec, shape, rng):
    return {"gamma": np.ones(shape[0]), "beta": np.zeros(shape[0])}


def init_state(spec, shape):
    return {"mean": np.zeros(shape[0]), "var": np.ones(shape[0])}


def _axes(x):
    return (0, 2, 3) if x.ndim == 4 else (0,)


def _per_channel(v, x):
    return v.reshape((1, -1, 1, 1) if x.ndim == 4 else (1, -1))


def apply(spec, params, x, *, training, state):
    y, _, state = vjp(spec, params, x, training=training, state=state)
    return y, state


def vjp(spec, params, x, *, training, state):
    axes = _axes(x)
    n = x.size // x.shape[1]
    if training:
        if n < 2:
            raise ValueError(
                f"{spec!r}: expected more than 1 value per channel when training, got input "
                f"of shape {x.shape}"
            )
        mu = x.mean(axis=axes)
        centred = x - _per_channel(mu, x)
        var = np.mean(centred * centred, axis=axes)
        m = spec.momentum
        state = {
            "mean": (1 - m) * state["mean"] + m * mu,
            "var": (1 - m) * state["var"] + m * var * (n / (n - 1)),
        }
    else:
        centred = x - _per_channel(state["mean"], x)
        var = state["var"]
    inv = _per_channel((1 / np.sqrt(var + spec.eps)).astype(x.dtype), x)
    xh = centred * inv
    y = xh * _per_channel(params["gamma"], x) + _per_channel(params["beta"], x)

    def pullback(dy):
        grads = {"gamma": (dy * xh).sum(axis=axes), "beta": dy.sum(axis=axes)}
        g = dy * _per_channel(params["gamma"], x)
        if training:
            mean_g = _per_channel(g.mean(axis=axes), x)
            mean_gxh = _per_channel((g * xh).mean(axis=axes), x)
            g = g - mean_g - xh * mean_gxh
        return grads, g * inv

    return y, pullback, {k: v.astype(x.dtype, copy=False) for k, v in state.items()}


registry.register(
    "batchnorm",
    batchnorm,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    has_modes=True,
    init_state=init_state,
    batchwise=True,
)
