"""Weight-initialisation schemes, chosen per layer by `weight_init` or by its activation.

Glorot/Xavier keeps var(x) steady forwards and backwards: var(w) = 2 / (fan_in + fan_out).
He/Kaiming doubles LeCun's 1 / fan_in for relu, which zeroes half its inputs.
Uniform variants draw U(-a, a) with a = sqrt(3 var). Biases start at zero, except under "torch",
which is PyTorch's default for weights and biases alike: U(±1/sqrt(fan_in)).
"""

from __future__ import annotations

import numpy as np

from fran import validate


def _std(scheme: str, fan_in: int, fan_out: int) -> float:
    family = scheme.rsplit("_", 1)[0]
    var = {"glorot": 2.0 / (fan_in + fan_out), "he": 2.0 / fan_in, "lecun": 1.0 / fan_in}[family]
    return var**0.5


SCHEMES = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "torch",
)
ALIASES = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
}
DEFAULT_FOR_ACTIVATION = {"relu": "he_normal"}  # everything else: glorot_uniform


def canonical(scheme: str) -> str:
    return ALIASES.get(scheme, scheme)


valid_scheme = validate.optional(validate.one_of((*SCHEMES, *ALIASES), "weight_init"))


def scheme_for(spec) -> str:
    if spec.weight_init is not None:
        return canonical(spec.weight_init)
    return DEFAULT_FOR_ACTIVATION.get(spec.activation, "glorot_uniform")


def draw(spec, shape: tuple, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A float64 weight array of `shape` drawn by the spec's scheme."""
    scheme = scheme_for(spec)
    if scheme == "torch":
        a = fan_in**-0.5
        return rng.uniform(-a, a, shape)
    std = _std(scheme, fan_in, fan_out)
    if scheme.endswith("uniform"):
        a = std * 3**0.5
        return rng.uniform(-a, a, shape)
    return rng.normal(0.0, std, shape)


def bias(spec, n: int, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """A float64 bias of length n: zeros, or PyTorch's U(±1/sqrt(fan_in)) under "torch"."""
    if scheme_for(spec) == "torch":
        a = fan_in**-0.5
        return rng.uniform(-a, a, n)
    return np.zeros(n)
