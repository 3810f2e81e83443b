"""Elementwise activations, one table used by dense, conv2d and conv2d_transpose.

Each entry has f(z) and vjp(z, y, dy) -> dz, written with y = f(z) where that is cheaper:
tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = [z > 0].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fran.kernels import epilogue


class Activation(NamedTuple):
    f: Callable[[np.ndarray], np.ndarray]
    vjp: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _sigmoid(z):
    # exp of a non-positive number never overflows: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) otherwise
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _tanh_vjp(z, y, dy):
    # dy * (1 - y*y) in one fresh buffer: three big temporaries cost more than the arithmetic.
    # The same operations in the same order as the plain expression, so bitwise equal.
    dz = np.multiply(y, y, dtype=np.result_type(y, dy))
    np.subtract(1, dz, out=dz)
    dz *= dy
    return dz


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(lambda z: z, lambda z, y, dy: dy),
    "tanh": Activation(np.tanh, _tanh_vjp),
    "relu": Activation(lambda z: np.maximum(z, 0), lambda z, y, dy: epilogue.relu_grad(z, dy)),
    "sigmoid": Activation(_sigmoid, lambda z, y, dy: dy * (y * (1 - y))),
}


def register_activation(name: str, f, vjp) -> None:
    """Add an activation usable by name in every layer that takes `activation=`."""
    if name in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is already registered")
    ACTIVATIONS[name] = Activation(f, vjp)
