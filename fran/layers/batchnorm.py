"""Batch normalisation, as torch's BatchNorm2d on (C, H, W) samples and BatchNorm1d on (F,):
per channel c, over the batch (and the pixels),

training:  mu = mean x,  var = mean (x - mu)^2 (biased),  xh = (x - mu) / sqrt(var + eps),
           y = gamma xh + beta;  running mean <- (1 - m) mean + m mu,
           running var <- (1 - m) var_r + m var n / (n - 1)   (unbiased, torch's momentum m)
inference: xh = (x - mean_r) / sqrt(var_r + eps),  y = gamma xh + beta

vjp (training, n values per channel, g = gamma dy):
    dx = (g - mean g - xh mean(g xh)) / sqrt(var + eps),  dgamma = sum dy xh,  dbeta = sum dy
vjp (inference): dx = g / sqrt(var_r + eps), the same dgamma and dbeta.
The batch's sums (of x, of (x - mu)^2 and, backwards, of dy and dy (x - mu)) are taken with
`batch.sum`, so a batch cut into pieces (fran.parallel's lockstep) has the whole batch's
statistics: synchronised batch norm, for any thread or rank count.
Computed per channel c as affine maps of x - mu, with a = gamma / sqrt(var + eps) (fewer passes
over the batch than the formulas as written, the same values; fran.kernels.batchnorm's
scale_shift and input_grad make the elementwise passes):
    y = a (x - mu) + beta,   dgamma = sum dy (x - mu) / sqrt(var + eps),
    dx = a dy - a mean dy - a mean(dy (x - mu)) (x - mu) / (var + eps)    (training)
Params: {"gamma": ones(C), "beta": zeros(C)}; state: {"mean": zeros(C), "var": ones(C)}.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.kernels import batchnorm as norm
from fran.layers._repr import compact_repr


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


def param_shapes(spec, shape):
    return {"gamma": (shape[0],), "beta": (shape[0],)}


def state_shapes(spec, shape):
    return {"mean": (shape[0],), "var": (shape[0],)}


def _sum_products(a, b):
    """sum over samples and pixels of a * b, per channel: (N, C, P) x (N, C, P) -> (C,)."""
    return np.einsum("ncp,ncp->c", a, b)


# apply: the registry's default, (y, state)
def vjp(spec, params, x, *, training, state, batch=registry.WHOLE_BATCH):
    N, C = x.shape[:2]
    xr = x.reshape(N, C, -1)  # (N, C, pixels); a view for conv outputs and dense inputs
    n = int(batch.sum(np.array(N * xr.shape[2]))) if training else N * xr.shape[2]
    if training and n < 2:
        raise ValueError(
            f"{spec!r}: expected more than 1 value per channel when training, got input "
            f"of shape {x.shape}"
        )
    dtype = x.dtype
    gamma, beta = params["gamma"].astype(dtype), params["beta"].astype(dtype)
    if training:
        mu = batch.sum(xr.sum(axis=(0, 2))) / n
        centred = xr - mu[:, None]
        var = batch.sum(_sum_products(centred, centred)) / n
        m = spec.momentum
        state = {
            "mean": (1 - m) * state["mean"] + m * mu,
            "var": (1 - m) * state["var"] + m * var * (n / (n - 1)),
        }
    else:
        centred, var = xr - state["mean"].astype(dtype)[:, None], state["var"]
    inv = (1 / np.sqrt(var + spec.eps)).astype(dtype)
    a = inv * gamma
    y = norm.scale_shift(centred, a, beta)

    def pullback(dy):
        dyr = dy.reshape(N, C, -1)
        sum_dy, sum_dyc = dyr.sum(axis=(0, 2)), _sum_products(dyr, centred)  # this piece's
        if training:  # dx = a (dy - mean dy - mean(dy (x - mu)) (x - mu) / (var + eps))
            all_dy, all_dyc = batch.sum((sum_dy, sum_dyc))  # the whole batch's
            dx = norm.input_grad(dyr, centred, a, a * all_dy / n, a * inv * inv * all_dyc / n)
        else:
            dx = dyr * a[:, None]
        return {"gamma": inv * sum_dyc, "beta": sum_dy}, dx.reshape(x.shape)

    return y.reshape(x.shape), pullback, {k: v.astype(dtype, copy=False) for k, v in state.items()}


registry.register(
    "batchnorm",
    batchnorm,
    output_shape=output_shape,
    init=init,
    param_shapes=param_shapes,
    vjp=vjp,
    has_modes=True,
    init_state=init_state,
    state_shapes=state_shapes,
    per_sample="inference",  # in training a sample's output depends on the batch's statistics,
    needs_batch=True,  # through batch.sum alone: its batches are cut into lockstep pieces
)
