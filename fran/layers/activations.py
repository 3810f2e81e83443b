"""Elementwise activations, one table used by dense, conv2d and conv2d_transpose.

Each entry has f(z) and vjp(z, y, dy) -> dz, written with y = f(z) where that is cheaper:
tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = [z > 0].
gelu (torch's GELU()):  y = z Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2,  gelu' = Phi(z) + z phi(z);
gelu_tanh (GELU(approximate="tanh")):  y = z (1 + tanh u) / 2,  u = sqrt(2/pi) (z + 0.044715 z^3),
  gelu_tanh' = (1 + tanh u) / 2 + z (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 z^2) / 2.
"""

from __future__ import annotations

import math
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


def _erf(z):
    # math.erf per element: NumPy has no erf, and a short polynomial would not be float64-exact
    flat = np.fromiter(map(math.erf, z.ravel().tolist()), dtype=np.float64, count=z.size)
    return flat.reshape(z.shape).astype(z.dtype, copy=False)


def _gelu(z):
    return z * ((1 + _erf(z * np.asarray(0.5**0.5, z.dtype))) / 2)


def _gelu_vjp(z, y, dy):
    Phi = (1 + _erf(z * np.asarray(0.5**0.5, z.dtype))) / 2
    phi = np.exp(-z * z / 2) * np.asarray((2 * math.pi) ** -0.5, z.dtype)
    return dy * (Phi + z * phi)


_SQRT_2_PI, _GELU_C = (2 / math.pi) ** 0.5, 0.044715


def _gelu_tanh(z):
    t = np.tanh(np.asarray(_SQRT_2_PI, z.dtype) * (z + np.asarray(_GELU_C, z.dtype) * z**3))
    return z * (1 + t) / 2


def _gelu_tanh_vjp(z, y, dy):
    t = np.tanh(np.asarray(_SQRT_2_PI, z.dtype) * (z + np.asarray(_GELU_C, z.dtype) * z**3))
    du = np.asarray(_SQRT_2_PI, z.dtype) * (1 + np.asarray(3 * _GELU_C, z.dtype) * z * z)
    return dy * ((1 + t) / 2 + z * (1 - t * t) * du / 2)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(lambda z: z, lambda z, y, dy: dy),
    "tanh": Activation(np.tanh, _tanh_vjp),
    "relu": Activation(lambda z: np.maximum(z, 0), lambda z, y, dy: epilogue.relu_grad(z, dy)),
    "sigmoid": Activation(_sigmoid, lambda z, y, dy: dy * (y * (1 - y))),
    "gelu": Activation(_gelu, _gelu_vjp),
    "gelu_tanh": Activation(_gelu_tanh, _gelu_tanh_vjp),
}


def register_activation(name: str, f, vjp) -> None:
    """Add an activation usable by name in every layer that takes `activation=`."""
    if name in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is already registered")
    ACTIVATIONS[name] = Activation(f, vjp)
