"""fran.optim as it was before contract v3 (commit d8f5c82), kept verbatim as the oracle of
tests/test_optim_bitwise.py: the optimizers built from primitives must give these bits.

Optimizers as gradient transformations, in the manner of Optax.

An Optimizer is `(name, init, update)`: `init(params) -> state` and
`update(grads, state, params) -> (updates, new_state)`, where `updates` is a params-shaped tree of
deltas (state None means init(params)); `apply_updates(params, updates)` adds them. `chain(*transforms)` composes transformations,
each one's updates feeding the next as its gradients: `chain(clip_by_global_norm(1.0), adam())`.
Every call builds new read-only arrays and mutates nothing.

Each rule is step for step the torch.optim one (g the gradient, p the param, t the step from 1):

    sgd       g += wd p;  b = momentum b + g;  g = g + momentum b (nesterov) or b;  p -= lr g
    adam      g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
              p -= lr/(1-b1^t) m / (sqrt(v/(1-b2^t)) + eps)
    adamw     p *= 1 - lr wd, then the adam step without the L2 term
    rmsprop   v = alpha v + (1-alpha) g^2;  d = g / (sqrt(v) + eps);
              b = momentum b + d, p -= lr b  (or p -= lr d when momentum = 0)
    adadelta  v = rho v + (1-rho) g^2;  d = sqrt(u + eps) / sqrt(v + eps) g;
              u = rho u + (1-rho) d^2;  p -= lr d
    clip_by_global_norm(max_norm)   g *= min(1, max_norm / (||g||_2 + 1e-6))  (clip_grad_norm_)

Every `lr` may be a number or a schedule `lr(step) -> float` (see fran.schedules), called with
the number of updates made before this one (each state carries that `count`).

State rules (fran.io saves states by these): every state is a NamedTuple class in STATES whose
fields are Python numbers or params-shaped trees of arrays; ChainState.inner is a tuple of states.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fran.tree import freeze, ravel, tree_leaves, tree_map, tree_zeros_like


class Optimizer(NamedTuple):
    name: str
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation (clip_by_global_norm)."""


class SgdState(NamedTuple):
    velocity: Any  # params-shaped; stays zero when momentum == 0
    count: int = 0  # updates made; a default so files saved before it existed still load


class AdamState(NamedTuple):
    count: int  # steps taken, a Python int: immutable and exact
    mu: Any
    nu: Any


class RmspropState(NamedTuple):
    count: int
    square_avg: Any
    momentum_buffer: Any  # stays zero when momentum == 0


class AdadeltaState(NamedTuple):
    count: int
    square_avg: Any
    acc_delta: Any


class ChainState(NamedTuple):
    inner: tuple  # one state per chained transformation, in order


STATES = {
    cls.__name__: cls
    for cls in (SgdState, AdamState, RmspropState, AdadeltaState, EmptyState, ChainState)
}  # for loading saved states by name


def same_kind(a, b) -> bool:
    """Whether two states are of the same classes all the way down (a chain's inner states too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, ChainState):
        return len(a.inner) == len(b.inner) and all(map(same_kind, a.inner, b.inner))
    return True


# ---------------------------------------------------------------- validation


def _number(value) -> bool:
    """A finite real number: Python's or NumPy's, but not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


def _positive(name, value, what):
    if not (_number(value) and value > 0):
        raise ValueError(f"{name}: {what} must be a number > 0, got {value!r}")


def _non_negative(name, value, what):
    if not (_number(value) and value >= 0):
        raise ValueError(f"{name}: {what} must be a number >= 0, got {value!r}")


def _fraction(name, value, what):
    if not (_number(value) and 0 <= value < 1):
        raise ValueError(f"{name}: {what} must be in [0, 1), got {value!r}")


def _closed_fraction(name, value, what):
    if not (_number(value) and 0 <= value <= 1):
        raise ValueError(f"{name}: {what} must be in [0, 1], got {value!r}")


def _learning_rate(name: str, lr) -> Callable[[int], float]:
    """lr(step) from a number (> 0) or a schedule, whose every value is checked when used."""
    if callable(lr):

        def schedule(step: int) -> float:
            value = lr(step)
            if not (_number(value) and value >= 0):
                raise ValueError(
                    f"{name}: the lr schedule returned {value!r} at step {step} "
                    f"(it must be a finite number >= 0)"
                )
            return float(value)

        return schedule
    _positive(name, lr, "lr (a number or a schedule step -> lr)")
    value = float(lr)
    return lambda step: value


def _show(lr) -> str:
    return repr(float(lr)) if _number(lr) else getattr(lr, "__name__", "schedule")


# ---------------------------------------------------------------- composition


def _optimizer(name: str, init, update) -> Optimizer:
    """The Optimizer, its update taking state None as init(params): a model never trained
    (opt_state None) can take a train_step, as plain sgd always could."""

    def fresh_if_none(grads, state, params):
        return update(grads, init(params) if state is None else state, params)

    return Optimizer(name, init, fresh_if_none)


def apply_updates(params, updates):
    """params + updates, leaf by leaf, as new read-only arrays of the params' dtypes."""
    return freeze(tree_map(lambda p, u: np.add(p, u, dtype=np.result_type(p)), params, updates))


def chain(*transforms: Optimizer) -> Optimizer:
    """The transformations applied in order, each one's updates being the next one's grads.

    The state is ChainState(inner) with one inner state per transformation.
    """
    if not transforms or not all(isinstance(t, Optimizer) for t in transforms):
        raise ValueError(f"chain: every argument must be an Optimizer, got {transforms!r}")

    def init(params):
        return ChainState(tuple(t.init(params) for t in transforms))

    def update(grads, state, params):
        inner = []
        for t, s in zip(transforms, state.inner, strict=True):
            grads, s = t.update(grads, s, params)
            inner.append(s)
        return grads, ChainState(tuple(inner))

    return _optimizer(f"chain({', '.join(t.name for t in transforms)})", init, update)


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Scale the gradients by min(1, max_norm / (total_norm + 1e-6)), total_norm being the 2-norm
    of all of them together: as torch.nn.utils.clip_grad_norm_ (which also always multiplies).

    Args:
        max_norm: > 0.
    Returns:
        A stateless transformation (state EmptyState()), to chain before an optimizer.
    """
    _positive("clip_by_global_norm", max_norm, "max_norm")

    def init(params):
        return EmptyState()

    def update(grads, state, params):
        norms = [np.linalg.norm(np.ravel(g)) for g in tree_leaves(grads)]
        total = float(np.linalg.norm(norms)) if norms else 0.0
        scale = min(max_norm / (total + 1e-6), 1.0)
        return freeze(tree_map(lambda g: g * np.asarray(scale, np.result_type(g)), grads)), state

    return _optimizer(f"clip_by_global_norm(max_norm={max_norm})", init, update)


# ---------------------------------------------------------------- optimizers


def sgd(lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> Optimizer:
    """Stochastic gradient descent as torch.optim.SGD (dampening 0).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr. (torch has no default; the name "sgd"
            means sgd(lr=0.01).)
        momentum: in [0, 1); 0 is plain SGD.
        nesterov: Nesterov momentum (g + momentum b in place of b); needs momentum > 0.
        weight_decay: >= 0; the L2 term wd p added to the gradient.
    Returns:
        An Optimizer whose state is SgdState(velocity, count).
    """
    fn = "sgd"
    rate = _learning_rate(fn, lr)
    _fraction(fn, momentum, "momentum")
    if not isinstance(nesterov, bool):
        raise ValueError(f"{fn}: nesterov must be True or False, got {nesterov!r}")
    if nesterov and momentum == 0:
        raise ValueError(f"{fn}: nesterov=True needs momentum > 0 (as torch.optim.SGD)")
    _non_negative(fn, weight_decay, "weight_decay")

    def init(params):
        return SgdState(freeze(tree_zeros_like(params)), 0)

    def update(grads, state, params):
        step_lr = rate(state.count)
        if weight_decay:
            grads = tree_map(lambda g, p: g + weight_decay * p, grads, params)
        velocity = state.velocity
        if momentum:
            velocity = freeze(tree_map(lambda v, g: momentum * v + g, velocity, grads))
            if nesterov:
                grads = tree_map(lambda g, v: g + momentum * v, grads, velocity)
            else:
                grads = velocity
        updates = freeze(tree_map(lambda g: g * -step_lr, grads))
        return updates, SgdState(velocity, state.count + 1)

    name = f"sgd(lr={_show(lr)}, momentum={momentum}, nesterov={nesterov}, weight_decay={weight_decay})"
    return _optimizer(name, init, update)


def _adam(fn: str, lr, b1, b2, eps, weight_decay, decoupled: bool) -> Optimizer:
    rate = _learning_rate(fn, lr)
    _fraction(fn, b1, "b1")
    _fraction(fn, b2, "b2")
    _positive(fn, eps, "eps")
    _non_negative(fn, weight_decay, "weight_decay")

    def init(params):
        return AdamState(0, freeze(tree_zeros_like(params)), freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        # on one vector holding every param (fran.tree.ravel): a dozen NumPy calls in all
        step_lr = rate(state.count)
        t = state.count + 1
        g, unravel = ravel(grads)
        m, _ = ravel(state.mu)
        v, _ = ravel(state.nu)
        p = ravel(params)[0] if weight_decay else None
        if weight_decay and not decoupled:
            g = g + weight_decay * p  # L2, as torch.optim.Adam
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
        np.multiply(mu, -step_lr / (1 - b1**t), out=tmp)
        tmp /= denom
        if weight_decay and decoupled:
            tmp -= (step_lr * weight_decay) * p  # p *= 1 - lr wd, as torch.optim.AdamW
        for vector in (tmp, mu, nu):
            vector.flags.writeable = False  # and so every view unravel makes of it
        return unravel(tmp), AdamState(t, unravel(mu), unravel(nu))

    name = f"{fn}(lr={_show(lr)}, b1={b1}, b2={b2}, eps={eps}, weight_decay={weight_decay})"
    return _optimizer(name, init, update)


def adam(lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay=0.0):
    """Adam with bias correction, step for step as torch.optim.Adam (amsgrad off).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        b1, b2: decay rates of the first and second moment estimates, in [0, 1).
        eps: added to the denominator (> 0).
        weight_decay: >= 0; L2: wd p added to the gradient (as torch; see adamw for decoupled).
    Returns:
        An Optimizer whose state is AdamState(count, mu, nu).
    """
    return _adam("adam", lr, b1, b2, eps, weight_decay, decoupled=False)


def adamw(lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay=0.01):
    """AdamW (decoupled weight decay), step for step as torch.optim.AdamW: p *= 1 - lr wd, then
    the Adam step on the raw gradient.

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        b1, b2: in [0, 1).  eps: > 0.  weight_decay: >= 0 (torch's default 0.01).
    Returns:
        An Optimizer whose state is AdamState(count, mu, nu).
    """
    return _adam("adamw", lr, b1, b2, eps, weight_decay, decoupled=True)


def rmsprop(lr=0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0) -> Optimizer:
    """RMSprop as torch.optim.RMSprop (centered=False, weight_decay=0).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added to the root (> 0).
        momentum: in [0, 1).
    Returns:
        An Optimizer whose state is RmspropState(count, square_avg, momentum_buffer).
    """
    fn = "rmsprop"
    rate = _learning_rate(fn, lr)
    _closed_fraction(fn, alpha, "alpha")
    _positive(fn, eps, "eps")
    _fraction(fn, momentum, "momentum")

    def init(params):
        zeros = freeze(tree_zeros_like(params))
        return RmspropState(0, zeros, freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        step_lr = rate(state.count)
        square_avg = freeze(
            tree_map(lambda v, g: alpha * v + (1 - alpha) * (g * g), state.square_avg, grads)
        )
        direction = tree_map(lambda g, v: g / (np.sqrt(v) + eps), grads, square_avg)
        buf = state.momentum_buffer
        if momentum:
            buf = freeze(tree_map(lambda b, d: momentum * b + d, buf, direction))
            direction = buf
        updates = freeze(tree_map(lambda d: d * -step_lr, direction))
        return updates, RmspropState(state.count + 1, square_avg, buf)

    return _optimizer(
        f"rmsprop(lr={_show(lr)}, alpha={alpha}, eps={eps}, momentum={momentum})", init, update
    )


def adadelta(lr=1.0, rho: float = 0.9, eps: float = 1e-6) -> Optimizer:
    """Adadelta as torch.optim.Adadelta (weight_decay=0).

    Args:
        lr: scales the delta (> 0) or a schedule step -> lr.
        rho: decay rate of both running averages, in [0, 1].
        eps: added inside both roots (> 0).
    Returns:
        An Optimizer whose state is AdadeltaState(count, square_avg, acc_delta).
    """
    fn = "adadelta"
    rate = _learning_rate(fn, lr)
    _closed_fraction(fn, rho, "rho")
    _positive(fn, eps, "eps")

    def init(params):
        return AdadeltaState(0, freeze(tree_zeros_like(params)), freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        step_lr = rate(state.count)
        square_avg = freeze(
            tree_map(lambda v, g: rho * v + (1 - rho) * (g * g), state.square_avg, grads)
        )
        delta = tree_map(
            lambda u, v, g: np.sqrt(u + eps) / np.sqrt(v + eps) * g,
            state.acc_delta,
            square_avg,
            grads,
        )
        acc_delta = freeze(
            tree_map(lambda u, d: rho * u + (1 - rho) * (d * d), state.acc_delta, delta)
        )
        updates = freeze(tree_map(lambda d: d * -step_lr, delta))
        return updates, AdadeltaState(state.count + 1, square_avg, acc_delta)

    return _optimizer(f"adadelta(lr={_show(lr)}, rho={rho}, eps={eps})", init, update)


OPTIMIZERS = {"sgd": sgd, "adam": adam, "adamw": adamw, "rmsprop": rmsprop, "adadelta": adadelta}


def get_optimizer(optimizer) -> Optimizer:
    """An Optimizer from an Optimizer or a name: each constructor's defaults, except that "sgd"
    (which has no default lr, as torch) means sgd(lr=0.01)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if optimizer == "sgd":
        return sgd(0.01)
    if isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer]()
    raise ValueError(
        f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)} "
        f"(or an Optimizer such as fran.adam(1e-3))"
    )
