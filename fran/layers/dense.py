"""Fully connected layer: z = x @ w + b, y = act(z), for x (N, n_in), w (n_in, n_out), b (n_out,);
on sequences (N, T, n_in) every position is a row (fran.layers._positions). The products are
_gemm's, the bias and activation one pass after them (fran.kernels.epilogue).

vjp: dz = act'(z) * dy;  dw = x.T @ dz;  db = dz.sum(0);  dx = dz @ w.T
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.kernels import epilogue
from fran.layers import _gemm, _init, _positions
from fran.layers._repr import compact_repr
from fran.layers.activations import ACTIVATIONS
from fran.validate import one_of, positive_int


@attrs.frozen
class dense:
    """A fully connected layer: act(x @ w + b) on (N, n_in) or (N, T, n_in) inputs."""

    __repr__ = compact_repr
    n_out: int = attrs.field(validator=positive_int)
    activation: str = attrs.field(default="identity", validator=one_of(ACTIVATIONS, "activation"))
    weight_init: str | None = attrs.field(default=None, validator=_init.valid_scheme)


def output_shape(spec, shape):
    if len(shape) not in (1, 2):
        raise ValueError(
            f"{spec!r}: takes (n_in,) or (T, n_in), got {tuple(shape)}: put flatten() before it"
        )
    return (*shape[:-1], spec.n_out)


def init(spec, shape, rng):
    n_in = shape[-1]
    w = _init.draw(spec, (n_in, spec.n_out), n_in, spec.n_out, rng)
    return {"w": w, "b": _init.bias(spec, spec.n_out, n_in, rng)}


def param_shapes(spec, shape):
    return {"w": (shape[-1], spec.n_out), "b": (spec.n_out,)}


@_positions.over_positions  # (N, T, n_in): every position is a row
def vjp(spec, params, x):  # apply is the registry's default: this forward, the pullback unused
    act = ACTIVATIONS[spec.activation]
    z, y = epilogue.bias_act(_gemm.matmul_rows(x, params["w"]), params["b"], spec.activation, 1)

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, dy)
        grads = {"w": _gemm.matmul_tn(x, dz), "b": dz.sum(axis=0)}
        return grads, (_gemm.matmul_rows(dz, params["w"].T) if input_grad else None)

    return y, pullback


rules = dict(output_shape=output_shape, init=init, param_shapes=param_shapes, vjp=vjp)
registry.register("dense", dense, **rules, per_sample=True)
