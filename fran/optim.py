"""Optimizers built from gradient transformations, as Optax composes them.

A transformation is `Optimizer(name, init, update)`: `init(params) -> state` and
`update(grads, state, params) -> (updates, new_state)`, `updates` a params-shaped tree that the
next transformation of a `chain` takes as its grads; the last one's updates are the deltas
`apply_updates(params, updates)` adds. (A built-in's update also takes state None as
init(params).) Each primitive is its formula (g what comes in, p the params, t the step from 1):

    add_decayed_weights(wd)        g + wd p
    trace(decay, nesterov)         f = decay f + g;  out f, or g + decay f with nesterov
    scale_by_adam(b1, b2, eps)     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
                                   out (m / (1-b1^t)) / (sqrt(v) / sqrt(1-b2^t) + eps)
    scale_by_rms(alpha, eps)       v = alpha v + (1-alpha) g^2;  out g / (sqrt(v) + eps)
    scale_by_adadelta(rho, eps)    v = rho v + (1-rho) g^2;  d = sqrt(u + eps) / sqrt(v + eps) g;
                                   u = rho u + (1-rho) d^2;  out d
    scale_by_learning_rate(lr)     out -lr g   (lr a number, or a schedule called with t - 1)
    clip_by_global_norm(c)         out g min(1, c / (||g||_2 + 1e-6))

and the optimizers are chains of them, step for step the torch.optim rules:

    sgd       chain(add_decayed_weights(wd), trace(momentum, nesterov), scale_by_learning_rate(lr))
    adam      chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))
    adamw     chain(scale_by_adam(b1, b2, eps), add_decayed_weights(wd), scale_by_learning_rate(lr))
    rmsprop   chain(scale_by_rms(alpha, eps), trace(momentum), scale_by_learning_rate(lr))
    adadelta  chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(lr))

Every call builds new read-only arrays and writes into none it is given. A state is anything
fran.io encodes by its structure: NamedTuples, dicts with str keys, tuples, NumPy arrays and
scalars, Python numbers, bools and None, nested (see README, "Optimizers"). `carry_over` decides
whether a model's state can continue under another optimizer.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fran.tree import freeze, ravel, tree_leaves, tree_map, tree_zeros_like
from fran.validate import boolean, in_range, non_negative, number, positive


class Optimizer(NamedTuple):
    """A gradient transformation: `init(params) -> state`,
    `update(grads, state, params) -> (updates, new_state)`; `name` says what it is."""

    name: str
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation (add_decayed_weights, clip_by_global_norm)."""


class TraceState(NamedTuple):
    trace: Any  # params-shaped; stays zero when decay == 0


class ScaleByAdamState(NamedTuple):
    count: int  # steps taken, a Python int: immutable and exact
    mu: Any
    nu: Any


class ScaleByRmsState(NamedTuple):
    square_avg: Any


class ScaleByAdadeltaState(NamedTuple):
    square_avg: Any
    acc_delta: Any


class ScaleByLearningRateState(NamedTuple):
    count: int  # updates made: the step a schedule is called with


class ChainState(NamedTuple):
    inner: tuple  # one state per chained transformation, in order


# The states of the one-function optimizers before the chains (format version 1 files hold them);
# fran.io turns each into its chain's state with from_legacy when it loads such a file.
class SgdState(NamedTuple):
    velocity: Any
    count: int = 0  # absent from the oldest files


class AdamState(NamedTuple):
    count: int
    mu: Any
    nu: Any


class RmspropState(NamedTuple):
    count: int
    square_avg: Any
    momentum_buffer: Any


class AdadeltaState(NamedTuple):
    count: int
    square_avg: Any
    acc_delta: Any


LEGACY_STATES = {c.__name__: c for c in (SgdState, AdamState, RmspropState, AdadeltaState)}
LEGACY_STATES.update(EmptyState=EmptyState, ChainState=ChainState)


def from_legacy(state):
    """A format-1 optimizer state as the state of the chain its constructor builds now."""
    lr = ScaleByLearningRateState
    if isinstance(state, SgdState):
        return ChainState((EmptyState(), TraceState(state.velocity), lr(state.count)))
    if isinstance(state, AdamState):
        return ChainState((EmptyState(), ScaleByAdamState(*state), lr(state.count)))
    if isinstance(state, RmspropState):
        rms, momentum = ScaleByRmsState(state.square_avg), TraceState(state.momentum_buffer)
        return ChainState((rms, momentum, lr(state.count)))
    if isinstance(state, AdadeltaState):
        adadelta = ScaleByAdadeltaState(state.square_avg, state.acc_delta)
        return ChainState((adadelta, lr(state.count)))
    if isinstance(state, ChainState):
        return ChainState(tuple(from_legacy(s) for s in state.inner))
    return state


# ---------------------------------------------------------------- state types for files

STATE_NAME = re.compile(r"[A-Za-z_][\w<>]*(\.[A-Za-z_<][\w<>]*)*")
_KNOWN: dict[str, type] = {}


def state_name(cls: type) -> str:
    """The name a NamedTuple state class is saved under: 'module.QualName' (a class loaded
    without its own being known keeps the name it was saved under)."""
    return getattr(cls, "_fran_saved_as", None) or f"{cls.__module__}.{cls.__qualname__}"


def register_state(cls: type) -> type:
    """Make fran.io load a NamedTuple state class as itself (usable as a decorator).

    Without it a user's state still saves, loads and resumes: it loads as a stand-in NamedTuple
    of the same name and fields, which train_nn carries over into the optimizer's own class. A
    class registered under a name registered before replaces the earlier one.
    """
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"register_state: expected a NamedTuple class, got {cls!r}")
    name = state_name(cls)
    if not STATE_NAME.fullmatch(name):
        raise ValueError(f"register_state: {cls!r} has a name fran cannot save ({name!r})")
    _KNOWN[name] = cls  # a class of the same name replaces it: a module re-run in a notebook
    return cls


def known_state(name: str) -> type | None:
    """The NamedTuple class registered under `name` (fran's own are), or None."""
    return _KNOWN.get(name)


# ---------------------------------------------------------------- carrying a state over


def _slots(state) -> list:
    """The states that hold something, in order: a chain's inner states (recursively), leaving
    out stateless ones (EmptyState(), {}, ())."""
    if isinstance(state, ChainState):
        return [slot for inner in state.inner for slot in _slots(inner)]
    return [state] if tree_leaves(state) else []


def _kind(tree):
    """The structure of a state, without its values: classes by saved name, arrays by
    shape and dtype, numbers as 'number'."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return (
            state_name(type(tree)),
            tuple((f, _kind(v)) for f, v in zip(tree._fields, tree, strict=True)),
        )
    if isinstance(tree, dict):
        return ("dict", tuple((k, _kind(v)) for k, v in tree.items()))
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, tuple(_kind(v) for v in tree))
    if isinstance(tree, (np.ndarray, np.generic)):
        return ("array", np.shape(tree), np.result_type(tree).str)
    return ("number" if isinstance(tree, numbers.Number) else type(tree).__name__,)


def _refill(fresh, old):
    """fresh's structure and classes holding old's values (of the same _kind)."""
    if isinstance(fresh, tuple) and hasattr(fresh, "_fields"):
        return type(fresh)(*(_refill(f, o) for f, o in zip(fresh, old, strict=True)))
    if isinstance(fresh, dict):
        return {k: _refill(v, old[k]) for k, v in fresh.items()}
    if isinstance(fresh, (tuple, list)):
        return type(fresh)(_refill(f, o) for f, o in zip(fresh, old, strict=True))
    return old


def carry_over(old, fresh):
    """`old` continued as the state of the optimizer whose fresh state is `fresh`, or None when
    it cannot be: the stateful parts (a chain's inner states, nested chains flattened, stateless
    ones left out) must be the same classes with the same fields, shapes and dtypes, in order.
    So adam's state continues under adamw or chain(clip_by_global_norm(1.0), adam()), a loaded
    stand-in continues as the class it stands for, and sgd's never becomes adam's."""
    old_slots, fresh_slots = _slots(old), _slots(fresh)
    if len(old_slots) != len(fresh_slots) or any(
        _kind(o) != _kind(f) for o, f in zip(old_slots, fresh_slots, strict=True)
    ):
        return None
    filled = iter(_refill(f, o) for f, o in zip(fresh_slots, old_slots, strict=True))

    def rebuild(state):
        if isinstance(state, ChainState):
            return ChainState(tuple(rebuild(s) for s in state.inner))
        return next(filled) if tree_leaves(state) else state

    return rebuild(fresh)


_PRIMITIVE = {
    EmptyState: "stateless",
    TraceState: "trace",
    ScaleByAdamState: "scale_by_adam",
    ScaleByRmsState: "scale_by_rms",
    ScaleByAdadeltaState: "scale_by_adadelta",
    ScaleByLearningRateState: "scale_by_learning_rate",
}


def describe(state) -> str:
    """What a state comes from, for messages: 'chain(trace, scale_by_learning_rate)'."""
    if isinstance(state, ChainState):
        return f"chain({', '.join(describe(s) for s in state.inner)})"
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return _PRIMITIVE.get(type(state)) or state_name(type(state))
    if isinstance(state, dict):
        return f"a dict with keys {sorted(map(str, state))}"
    return type(state).__name__


# ---------------------------------------------------------------- validation


_FRACTION = in_range(0, 1, closed="left")  # a momentum or a decay rate: [0, 1)
_CLOSED_FRACTION = in_range(0, 1)  # rmsprop's alpha, adadelta's rho: [0, 1]


def _learning_rate(name: str, lr) -> Callable[[int], float]:
    """lr(step) from a number (> 0) or a schedule, whose every value is checked when used."""
    if callable(lr):

        def schedule(step: int) -> float:
            value = lr(step)
            if not non_negative.test(value):
                raise ValueError(
                    f"{name}: the lr schedule returned {value!r} at step {step} "
                    f"(it must be a finite number >= 0)"
                )
            return float(value)

        return schedule
    positive.check(name, "lr (a number or a schedule step -> lr)", lr)
    value = float(lr)
    return lambda step: value


def _show(lr) -> str:
    return repr(float(lr)) if number.test(lr) else getattr(lr, "__name__", "schedule")


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


def _named(name: str, transform: Optimizer) -> Optimizer:
    return transform._replace(name=name)


# ---------------------------------------------------------------- primitives


def add_decayed_weights(weight_decay: float) -> Optimizer:
    """g + wd p: the L2 term before a rule (as torch's weight_decay), or the decoupled decay
    after one (adamw).

    Args:
        weight_decay: >= 0; 0 passes the updates through unchanged.
    Returns:
        A stateless transformation (state EmptyState()).
    """
    non_negative.check("add_decayed_weights", "weight_decay", weight_decay)

    def update(grads, state, params):
        if weight_decay == 0:
            return grads, state
        return freeze(tree_map(lambda g, p: g + weight_decay * p, grads, params)), state

    return _optimizer(
        f"add_decayed_weights(weight_decay={weight_decay})", lambda params: EmptyState(), update
    )


def trace(decay: float, nesterov: bool = False) -> Optimizer:
    """Momentum: f = decay f + g, the updates f (or g + decay f with nesterov), as torch's
    SGD momentum with dampening 0.

    Args:
        decay: the momentum, in [0, 1); 0 passes the updates through (the trace stays zero).
        nesterov: Nesterov momentum; needs decay > 0.
    Returns:
        A transformation whose state is TraceState(trace).
    """
    fn = "trace"
    _FRACTION.check(fn, "decay (momentum)", decay)
    boolean.check(fn, "nesterov", nesterov)
    if nesterov and decay == 0:
        raise ValueError(f"{fn}: nesterov=True needs momentum > 0 (as torch.optim.SGD)")

    def init(params):
        return TraceState(freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        if decay == 0:
            return grads, state  # f = g: nothing to remember
        f = freeze(tree_map(lambda f, g: decay * f + g, state.trace, grads))
        if nesterov:
            return freeze(tree_map(lambda g, f: g + decay * f, grads, f)), TraceState(f)
        return f, TraceState(f)

    return _optimizer(f"trace(decay={decay}, nesterov={nesterov})", init, update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam's direction m_hat / (sqrt(v_hat) + eps), its moments bias-corrected as
    torch.optim.Adam's (amsgrad off): chain scale_by_learning_rate after it.

    Args:
        b1, b2: decay rates of the first and second moment estimates, in [0, 1).
        eps: added to the denominator (> 0).
    Returns:
        A transformation whose state is ScaleByAdamState(count, mu, nu).
    """
    fn = "scale_by_adam"
    _FRACTION.check(fn, "b1", b1)
    _FRACTION.check(fn, "b2", b2)
    positive.check(fn, "eps", eps)

    def init(params):
        return ScaleByAdamState(0, freeze(tree_zeros_like(params)), freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        # on one vector holding every leaf (fran.tree.ravel): a dozen NumPy calls, not per leaf
        t = state.count + 1
        g, unravel = ravel(grads)
        m, v = ravel(state.mu)[0], ravel(state.nu)[0]
        mu = b1 * m + (1 - b1) * g
        nu = b2 * v + (1 - b2) * (g * g)
        mu_hat = mu / (1 - b1**t)
        sqrt_nu_hat = np.sqrt(nu) * (1 - b2**t) ** -0.5
        direction = mu_hat / (sqrt_nu_hat + eps)
        for vector in (direction, mu, nu):
            vector.flags.writeable = False  # and so every view unravel makes of it
        return unravel(direction), ScaleByAdamState(t, unravel(mu), unravel(nu))

    return _optimizer(f"scale_by_adam(b1={b1}, b2={b2}, eps={eps})", init, update)


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8) -> Optimizer:
    """RMSprop's direction g / (sqrt(v) + eps), v the running mean of g^2 (eps outside the
    root, as torch.optim.RMSprop).

    Args:
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added to the root (> 0).
    Returns:
        A transformation whose state is ScaleByRmsState(square_avg).
    """
    fn = "scale_by_rms"
    _CLOSED_FRACTION.check(fn, "alpha", alpha)
    positive.check(fn, "eps", eps)

    def init(params):
        return ScaleByRmsState(freeze(tree_zeros_like(params)))

    def update(grads, state, params):
        v = freeze(
            tree_map(lambda v, g: alpha * v + (1 - alpha) * (g * g), state.square_avg, grads)
        )
        direction = freeze(tree_map(lambda g, v: g / (np.sqrt(v) + eps), grads, v))
        return direction, ScaleByRmsState(v)

    return _optimizer(f"scale_by_rms(alpha={alpha}, eps={eps})", init, update)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Optimizer:
    """Adadelta's delta sqrt(u + eps) / sqrt(v + eps) g, v and u the running means of g^2 and of
    the deltas' squares (as torch.optim.Adadelta).

    Args:
        rho: decay rate of both running averages, in [0, 1].
        eps: added inside both roots (> 0).
    Returns:
        A transformation whose state is ScaleByAdadeltaState(square_avg, acc_delta).
    """
    fn = "scale_by_adadelta"
    _CLOSED_FRACTION.check(fn, "rho", rho)
    positive.check(fn, "eps", eps)

    def init(params):
        return ScaleByAdadeltaState(
            freeze(tree_zeros_like(params)), freeze(tree_zeros_like(params))
        )

    def update(grads, state, params):
        u = state.acc_delta
        v = freeze(tree_map(lambda v, g: rho * v + (1 - rho) * (g * g), state.square_avg, grads))
        d = freeze(tree_map(lambda u, v, g: np.sqrt(u + eps) / np.sqrt(v + eps) * g, u, v, grads))
        u = freeze(tree_map(lambda u, d: rho * u + (1 - rho) * (d * d), u, d))
        return d, ScaleByAdadeltaState(v, u)

    return _optimizer(f"scale_by_adadelta(rho={rho}, eps={eps})", init, update)


def _scale_by_rate(fn: str, lr) -> Optimizer:
    rate = _learning_rate(fn, lr)

    def update(grads, state, params):
        step_lr = rate(state.count)
        return freeze(tree_map(lambda g: g * -step_lr, grads)), ScaleByLearningRateState(
            state.count + 1
        )

    return _optimizer(
        f"scale_by_learning_rate({_show(lr)})", lambda params: ScaleByLearningRateState(0), update
    )


def scale_by_learning_rate(lr) -> Optimizer:
    """-lr g: the descent step, lr a number (> 0) or a schedule lr(step) (fran.schedules)
    called with the number of updates made before this one.

    Returns:
        A transformation whose state is ScaleByLearningRateState(count) (a count for a number
        too, so an optimizer's state keeps its structure when its lr becomes a schedule).
    """
    return _scale_by_rate("scale_by_learning_rate", lr)


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Scale the gradients by min(1, max_norm / (total_norm + 1e-6)), total_norm being the 2-norm
    of all of them together: as torch.nn.utils.clip_grad_norm_ (which also always multiplies).

    Args:
        max_norm: > 0.
    Returns:
        A stateless transformation (state EmptyState()), to chain before an optimizer.
    """
    positive.check("clip_by_global_norm", "max_norm", max_norm)

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
    """Stochastic gradient descent as torch.optim.SGD (dampening 0):
    chain(add_decayed_weights(weight_decay), trace(momentum, nesterov), scale_by_learning_rate(lr)).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr. (torch has no default; the name "sgd"
            means sgd(lr=0.01).)
        momentum: in [0, 1); 0 is plain SGD.
        nesterov: Nesterov momentum (g + momentum b in place of b); needs momentum > 0.
        weight_decay: >= 0; the L2 term wd p added to the gradient.
    Returns:
        An Optimizer whose state is ChainState((EmptyState(), TraceState, ScaleByLearningRateState)).
    """
    fn = "sgd"
    _learning_rate(fn, lr)
    _FRACTION.check(fn, "momentum", momentum)
    boolean.check(fn, "nesterov", nesterov)
    if nesterov and momentum == 0:
        raise ValueError(f"{fn}: nesterov=True needs momentum > 0 (as torch.optim.SGD)")
    non_negative.check(fn, "weight_decay", weight_decay)
    name = f"sgd(lr={_show(lr)}, momentum={momentum}, nesterov={nesterov}, weight_decay={weight_decay})"
    return _named(
        name,
        chain(
            add_decayed_weights(weight_decay),
            trace(momentum, nesterov),
            _scale_by_rate(fn, lr),
        ),
    )


def _adam(fn: str, lr, b1, b2, eps, weight_decay, decoupled: bool) -> Optimizer:
    _learning_rate(fn, lr)
    _FRACTION.check(fn, "b1", b1)
    _FRACTION.check(fn, "b2", b2)
    positive.check(fn, "eps", eps)
    non_negative.check(fn, "weight_decay", weight_decay)
    decay, moments = add_decayed_weights(weight_decay), scale_by_adam(b1, b2, eps)
    steps = (moments, decay) if decoupled else (decay, moments)
    name = f"{fn}(lr={_show(lr)}, b1={b1}, b2={b2}, eps={eps}, weight_decay={weight_decay})"
    return _named(name, chain(*steps, _scale_by_rate(fn, lr)))


def adam(lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay=0.0):
    """Adam with bias correction, as torch.optim.Adam (amsgrad off): chain(
    add_decayed_weights(weight_decay), scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr)).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        b1, b2: decay rates of the first and second moment estimates, in [0, 1).
        eps: added to the denominator (> 0).
        weight_decay: >= 0; L2: wd p added to the gradient (as torch; see adamw for decoupled).
    Returns:
        An Optimizer whose state is
        ChainState((EmptyState(), ScaleByAdamState, ScaleByLearningRateState)).
    """
    return _adam("adam", lr, b1, b2, eps, weight_decay, decoupled=False)


def adamw(lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay=0.01):
    """AdamW (decoupled weight decay), as torch.optim.AdamW: p - lr (adam's direction + wd p),
    i.e. chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr)).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        b1, b2: in [0, 1).  eps: > 0.  weight_decay: >= 0 (torch's default 0.01).
    Returns:
        An Optimizer whose state is
        ChainState((ScaleByAdamState, EmptyState(), ScaleByLearningRateState)).
    """
    return _adam("adamw", lr, b1, b2, eps, weight_decay, decoupled=True)


def rmsprop(lr=0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0) -> Optimizer:
    """RMSprop as torch.optim.RMSprop (centered=False, weight_decay=0):
    chain(scale_by_rms(alpha, eps), trace(momentum), scale_by_learning_rate(lr)).

    Args:
        lr: learning rate (> 0) or a schedule step -> lr.
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added to the root (> 0).
        momentum: in [0, 1).
    Returns:
        An Optimizer whose state is
        ChainState((ScaleByRmsState, TraceState, ScaleByLearningRateState)).
    """
    fn = "rmsprop"
    _learning_rate(fn, lr)
    _CLOSED_FRACTION.check(fn, "alpha", alpha)
    positive.check(fn, "eps", eps)
    _FRACTION.check(fn, "momentum", momentum)
    name = f"rmsprop(lr={_show(lr)}, alpha={alpha}, eps={eps}, momentum={momentum})"
    return _named(name, chain(scale_by_rms(alpha, eps), trace(momentum), _scale_by_rate(fn, lr)))


def adadelta(lr=1.0, rho: float = 0.9, eps: float = 1e-6) -> Optimizer:
    """Adadelta as torch.optim.Adadelta (weight_decay=0):
    chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(lr)).

    Args:
        lr: scales the delta (> 0) or a schedule step -> lr.
        rho: decay rate of both running averages, in [0, 1].
        eps: added inside both roots (> 0).
    Returns:
        An Optimizer whose state is ChainState((ScaleByAdadeltaState, ScaleByLearningRateState)).
    """
    fn = "adadelta"
    _learning_rate(fn, lr)
    _CLOSED_FRACTION.check(fn, "rho", rho)
    positive.check(fn, "eps", eps)
    name = f"adadelta(lr={_show(lr)}, rho={rho}, eps={eps})"
    return _named(name, chain(scale_by_adadelta(rho, eps), _scale_by_rate(fn, lr)))


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


for _cls in (
    EmptyState,
    TraceState,
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByAdadeltaState,
    ScaleByLearningRateState,
    ChainState,
):
    register_state(_cls)
