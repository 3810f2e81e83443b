"""Fully connected layer: z = x @ w + b, y = act(z), for x (N, n_in), w (n_in, n_out), b (n_out,).
(The products are _gemm's: the same, in pieces for threads when a batch is computed whole.)
On a sequence sample (T, n_in) it acts on every position alike: x (N, T, n_in) is computed as
the (N T, n_in) rows it holds, so y is (N, T, n_out) and dw, db sum over positions too.

vjp: dz = act'(z) * dy;  dw = x.T @ dz;  db = dz.sum(0);  dx = dz @ w.T
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.layers import _gemm, _init
from fran.layers._validators import compact_repr, one_of, positive_int
from fran.layers.activations import ACTIVATIONS


@attrs.frozen
class dense:
    """A fully connected layer: act(x @ w + b) on (N, n_in) inputs."""

    __repr__ = compact_repr
    n_out: int = attrs.field(validator=positive_int)
    activation: str = attrs.field(default="identity", validator=one_of(ACTIVATIONS, "activation"))
    weight_init: str | None = attrs.field(default=None, validator=_init.valid_scheme)


def output_shape(spec, shape):
    if len(shape) not in (1, 2):
        raise ValueError(
            f"{spec!r}: expects a vector sample (n_in,) or a sequence (T, n_in), got shape "
            f"{tuple(shape)}; put flatten() before it"
        )
    return (*shape[:-1], spec.n_out)


def init(spec, shape, rng):
    n_in = shape[-1]
    w = _init.draw(spec, (n_in, spec.n_out), n_in, spec.n_out, rng)
    return {"w": w, "b": _init.bias(spec, spec.n_out, n_in, rng)}


def apply(spec, params, x):
    return vjp(spec, params, x)[0]  # the same forward; the pullback is simply not called


def vjp(spec, params, x):
    if x.ndim == 3:  # (N, T, n_in): every position is a row
        N, T, n_in = x.shape
        y, rows_pullback = vjp(spec, params, x.reshape(N * T, n_in))

        def pullback(dy, input_grad=True):
            grads, dx = rows_pullback(dy.reshape(N * T, -1), input_grad)
            return grads, (None if dx is None else dx.reshape(N, T, n_in))

        return y.reshape(N, T, spec.n_out), pullback
    act = ACTIVATIONS[spec.activation]
    z = _gemm.matmul_rows(x, params["w"])
    z += params["b"]  # in place: no second (N, n_out) buffer
    y = act.f(z)

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, dy)
        grads = {"w": _gemm.matmul_tn(x, dz), "b": dz.sum(axis=0)}
        return grads, (_gemm.matmul_rows(dz, params["w"].T) if input_grad else None)

    return y, pullback


registry.register("dense", dense, output_shape=output_shape, init=init, apply=apply, vjp=vjp)
