"""Average pooling over k x k windows with a stride (default k); floor mode, so ragged edges drop.

forward: y[n,c,r,q] = (1/k^2) * sum_{i,j < k} x[n,c, s*r+i, s*q+j]
vjp: dx[n,c, s*r+i, s*q+j] += dy[n,c,r,q] / k^2 for every window (r, q) and offset (i, j) < k;
overlapping windows (s < k) accumulate, pixels in no window (the ragged edge) get 0.
Params: {}. Layout NCHW, as torch.nn.functional.avg_pool2d(x, k, s) with its defaults.

The window sum is separable: sum the k columns of each window (a[n,c,h,q] = sum_j x[n,c,h, s*q+j]),
then its k rows. Each pass adds k strided views of the whole batch, so nothing loops over samples
or pixels. The pullback runs the adjoint passes in reverse order: each adds the gradient back
onto the k offsets of a fresh zero buffer.

This module is a complete fran layer plugin. Its distribution declares the entry point

    [project.entry-points."fran.layers"]
    avgpooling = "fran_avgpool:avgpooling"

and importing it registers the five rules, exactly as fran's built-ins do.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry, validate

__all__ = ["apply", "avgpooling", "init", "output_shape", "vjp"]


@attrs.frozen
class avgpooling:
    k: int = attrs.field(validator=validate.positive_int)  # avgpooling(k=0) raises, naming k
    stride: int | None = attrs.field(default=None, validator=validate.optional_positive_int)

    @property
    def s(self) -> int:
        return self.k if self.stride is None else self.stride

    def __repr__(self) -> str:
        """As the built-ins print: only the fields that differ from their defaults."""
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in attrs.fields(type(self))
            if f.default is attrs.NOTHING or getattr(self, f.name) != f.default
        ]
        return f"avgpooling({', '.join(shown)})"


def _out(size: int, k: int, s: int) -> int:
    return (size - k) // s + 1


def output_shape(spec: avgpooling, shape: tuple) -> tuple:
    C, H, W = validate.image_sample(spec, shape)
    if H < spec.k or W < spec.k:
        raise ValueError(f"{spec!r}: input of height x width {H} x {W} is smaller than the window")
    return (C, _out(H, spec.k, spec.s), _out(W, spec.k, spec.s))


def init(spec: avgpooling, shape: tuple, rng: np.random.Generator) -> dict:
    return {}


def _offset(x: np.ndarray, axis: int, i: int, s: int, n: int) -> np.ndarray:
    """The strided view x[..., i : i + s*n : s, ...] along `axis`: offset i of all n windows."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(i, i + s * (n - 1) + 1, s)
    return x[tuple(index)]


def _window_sum(x: np.ndarray, axis: int, k: int, s: int, n: int) -> np.ndarray:
    """Sum over the k offsets of n windows along `axis` (a fresh array)."""
    total = _offset(x, axis, 0, s, n).copy()
    for i in range(1, k):
        total = total + _offset(x, axis, i, s, n)
    return total


def _window_sum_adjoint(g: np.ndarray, axis: int, k: int, s: int, size: int) -> np.ndarray:
    """Adjoint of _window_sum: g added back onto each window's k offsets of a length-`size` axis."""
    shape = list(g.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=g.dtype)
    n = g.shape[axis]
    for i in range(k):
        _offset(out, axis, i, s, n)[...] += g  # a view into our own fresh buffer
    return out


def apply(spec: avgpooling, params: dict, x: np.ndarray) -> np.ndarray:
    _, OH, OW = output_shape(spec, x.shape[1:])
    rows = _window_sum(x, 3, spec.k, spec.s, OW)
    return _window_sum(rows, 2, spec.k, spec.s, OH) / (spec.k * spec.k)


def vjp(spec: avgpooling, params: dict, x: np.ndarray) -> tuple:
    _, _, H, W = x.shape
    k, s = spec.k, spec.s

    def pullback(dy: np.ndarray) -> tuple[dict, np.ndarray]:
        drows = _window_sum_adjoint(dy / (k * k), 2, k, s, H)
        return {}, _window_sum_adjoint(drows, 3, k, s, W)

    return apply(spec, params, x), pullback


registry.register(
    "avgpooling", avgpooling, output_shape=output_shape, init=init, apply=apply, vjp=vjp
)
