"""Optimizers as pure pairs, in the manner of Optax: `init(params) -> state` and
`update(grads, state, params) -> (new_params, new_state)`. State is a NamedTuple of params-shaped
trees; every call builds new arrays (read-only, like params) and mutates nothing.

sgd (torch's convention): v <- momentum v + g;  p <- p - lr v   (v = g when momentum = 0).
adam (Kingma & Ba, as torch.optim.Adam): m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fran.tree import freeze, ravel, tree_map, tree_zeros_like


class Optimizer(NamedTuple):
    name: str
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


class SgdState(NamedTuple):
    velocity: Any  # params-shaped; stays zero when momentum == 0


class AdamState(NamedTuple):
    count: int  # steps taken, a Python int: immutable and exact
    mu: Any
    nu: Any


STATES = {"SgdState": SgdState, "AdamState": AdamState}  # for loading saved states by name


def _positive(name, value, what):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name}: {what} must be a number > 0, got {value!r}")


def _fraction(name, value, what):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        raise ValueError(f"{name}: {what} must be in [0, 1), got {value!r}")


def sgd(lr: float, momentum: float = 0.0) -> Optimizer:
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    Args:
        lr: learning rate (> 0).
        momentum: in [0, 1); 0 is plain SGD.
    Returns:
        An Optimizer whose state is SgdState(velocity).
    """
    _positive("sgd", lr, "lr")
    _fraction("sgd", momentum, "momentum")

    def init(params):
        return SgdState(freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        if momentum == 0:
            return freeze(tree_map(lambda g: -lr * g, grads)), state
        velocity = freeze(tree_map(lambda v, g: momentum * v + g, state.velocity, grads))
        return freeze(tree_map(lambda v: -lr * v, velocity)), SgdState(velocity)

    return Optimizer(f"sgd(lr={lr}, momentum={momentum})", init, update)


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam with bias correction, step for step as torch.optim.Adam (no weight decay).

    Args:
        lr: learning rate (> 0).
        b1, b2: decay rates of the first and second moment estimates, in [0, 1).
        eps: added to the denominator (> 0).
    Returns:
        An Optimizer whose state is AdamState(count, mu, nu).
    """
    _positive("adam", lr, "lr")
    _fraction("adam", b1, "b1")
    _fraction("adam", b2, "b2")
    _positive("adam", eps, "eps")

    def init(params):
        return AdamState(0, freeze(tree_zeros_like(params)), freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        # on one vector holding every param (fran.tree.ravel): a dozen NumPy calls in all
        t = state.count + 1
        p, unravel = ravel(params)
        g, _ = ravel(grads)
        m, _ = ravel(state.mu)
        v, _ = ravel(state.nu)
        tmp = g * (1 - b1)
        mu = m * b1
        mu += tmp  # mu = b1 m + (1 - b1) g
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        nu = v * b2
        nu += tmp  # nu = b2 v + (1 - b2) g^2
        denom = np.sqrt(nu)
        denom *= (1 - b2**t) ** -0.5
        denom += eps
        np.multiply(mu, lr / (1 - b1**t), out=tmp)
        tmp /= denom
        new = -tmp
        for vector in (new, mu, nu):
            vector.flags.writeable = False  # and so every view unravel makes of it
        return unravel(new), AdamState(t, unravel(mu), unravel(nu))

    return Optimizer(f"adam(lr={lr}, b1={b1}, b2={b2}, eps={eps})", init, update)


def apply_updates(params, updates):
    """params + updates, leaf by leaf, as new read-only arrays."""
    return freeze(tree_map(lambda p, u: p + u, params, updates))


OPTIMIZERS = {"adam": adam, "sgd": sgd}


def get_optimizer(optimizer) -> Optimizer:
    """An Optimizer from an Optimizer or a name ("adam" = adam(), "sgd" = sgd(lr=0.01))."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if optimizer == "adam":
        return adam()
    if optimizer == "sgd":
        return sgd(0.01)
    raise ValueError(
        f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)} "
        f"(or an Optimizer such as fran.adam(1e-3))"
    )
