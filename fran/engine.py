"""The engine: init/init_state/apply/vjp/output_shape dispatched through the registry, and the
network spec.

A network is itself a registered layer whose rules are folds over its layers' rules: apply is a
left fold threading x and each layer's state; vjp is a left fold that collects pullbacks, and its
pullback a right fold that threads the cotangent backwards and gathers each layer's gradients
into a tuple. The fold gives each layer only what it declared (fran.registry): its mode, a
Generator spawned for its position from the caller's key, its own state.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np

from fran import registry
from fran.layers._validators import non_negative_int
from fran.tree import freeze, tree_map


def as_generator(rng) -> np.random.Generator:
    """A numpy Generator from a Generator or an int seed; nothing reads global random state."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {rng!r}")


def output_shape(spec, shape) -> tuple:
    """The per-sample output shape of `spec` for a per-sample input `shape` (no batch axis)."""
    return tuple(registry.rules_for(spec).output_shape(spec, tuple(shape)))


def init(spec, shape, rng=0, dtype=np.float32):
    """Fresh, read-only params for `spec` on per-sample input `shape`.

    Args:
        spec: a registered layer spec (a network included).
        shape: the per-sample input shape, e.g. (1, 28, 28).
        rng: a numpy Generator or an int seed.
        dtype: the params' dtype (float32 for training, float64 for gradient checks).
    Returns:
        The params pytree (a dict per layer; a tuple of dicts for a network).
    """
    shape = _check_shape("fran.init", spec, shape)
    dtype = _check_dtype("fran.init", dtype)
    params = registry.rules_for(spec).init(spec, shape, as_generator(rng))
    return freeze(tree_map(lambda a: np.array(a, dtype=dtype), params))


def _check_shape(fn: str, spec, shape) -> tuple:
    """A per-sample shape of positive ints that spec accepts, or a ValueError naming fn."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{fn}: shape must be a tuple of ints, got {shape!r}") from None
    if not shape or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise ValueError(
            f"{fn}: shape must be a non-empty tuple of positive ints (per sample, no batch axis), got {shape!r}"
        )
    try:
        output_shape(spec, shape)
    except ValueError as exc:
        raise ValueError(f"{fn}: {spec!r} cannot take samples of shape {shape}: {exc}") from None
    return tuple(int(n) for n in shape)


def _check_dtype(fn: str, dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fn}: dtype must be a NumPy float dtype, got {dtype!r}") from None
    if dtype.kind != "f":
        raise TypeError(f"{fn}: dtype must be a floating-point dtype, got {dtype}")
    return dtype


def _check_x(fn: str, spec, x) -> np.ndarray:
    """x as a batch the spec accepts: an array of floats (N, *sample), or a clear error."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim < 2:
        got = f"{type(x).__name__}" + (
            f" of dtype {x.dtype} and shape {x.shape}" if isinstance(x, np.ndarray) else ""
        )
        raise TypeError(f"{fn}: x must be a float array of shape (N, *sample_shape), got {got}")
    try:
        output_shape(spec, x.shape[1:])
    except ValueError as exc:
        raise ValueError(
            f"{fn}: {spec!r} cannot take x of shape {x.shape} (samples {x.shape[1:]}): {exc}"
        ) from None
    return x


def init_state(spec, shape, dtype=np.float32):
    """Fresh, read-only state for `spec` on per-sample input `shape`: running statistics and the
    like ({} for a layer without state; a tuple of them for a network)."""
    shape = _check_shape("fran.init_state", spec, shape)
    state = _init_state(spec, shape)
    dtype = _check_dtype("fran.init_state", dtype)
    return freeze(tree_map(lambda a: np.array(a, dtype=dtype), state))


def _init_state(spec, shape):
    rules = registry.rules_for(spec)
    return {} if rules.init_state is None else rules.init_state(spec, shape)


def as_rng(key):
    """A Generator from a key: an int or a tuple of ints (reproducible), a Generator (used as
    it is, so consumed), or None (no randomness: only inference may do without)."""
    if key is None or isinstance(key, np.random.Generator):
        return key
    try:
        return np.random.default_rng(key)
    except (TypeError, ValueError):
        raise TypeError(
            f"key must be an int, a tuple of non-negative ints or a numpy Generator, got {key!r}"
        ) from None


def _options(rules, spec, state, rng, training) -> dict:
    """The keywords a layer declared at registration, and only those."""
    kw = {}
    if rules.has_modes:
        kw["training"] = training
    if rules.needs_rng:
        kw["rng"] = rng
    if rules.init_state is not None:
        if state is None and not sublayers(spec):  # a network or block folds None down
            raise ValueError(
                f"{spec!r} carries state (running statistics): pass state=, e.g. model.state "
                f"or fran.init_state(spec, shape)"
            )
        kw["state"] = state
    return kw


def layer_apply(spec, params, x, state=None, rng=None, training=False):
    """(y, new state) for one layer of any kind: the one place that calls `rules.apply`."""
    rules = registry.rules_for(spec)
    out = rules.apply(spec, params, x, **_options(rules, spec, state, rng, training))
    return out if rules.init_state is not None else (out, state)


def layer_vjp(spec, params, x, state=None, rng=None, training=False):
    """(y, pullback, new state) for one layer of any kind: the one place that calls `rules.vjp`."""
    rules = registry.rules_for(spec)
    out = rules.vjp(spec, params, x, **_options(rules, spec, state, rng, training))
    return out if rules.init_state is not None else (*out, state)


def pull(pullback, gy, input_grad: bool = True):
    """pullback(gy), or with input_grad=False (gparams, None), skipping gx where it can."""
    if input_grad:
        return pullback(gy)
    if _takes_input_grad(pullback):
        return pullback(gy, input_grad=False)
    return pullback(gy)[0], None


def _takes_input_grad(fn) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None:
        return "input_grad" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    import inspect

    return "input_grad" in inspect.signature(fn).parameters


def apply(spec, params, x, *, state=None, key=None, training=False):
    """The output for a batch x; `training` picks the mode, `key` seeds any randomness.

    A layer with state (batch norm) reads `state`; in training its updated state is dropped
    here: use apply_with_state to keep it."""
    x = _check_x("fran.apply", spec, x)
    return layer_apply(spec, params, x, state, as_rng(key), bool(training))[0]


def apply_with_state(spec, params, x, *, state=None, key=None, training=False):
    """(y, new state): apply that also returns the state the layers updated."""
    x = _check_x("fran.apply_with_state", spec, x)
    return layer_apply(spec, params, x, state, as_rng(key), bool(training))


def vjp(spec, params, x, *, state=None, key=None, training=False):
    """(y, pullback), pullback(gy) -> (gparams, gx), in either mode (inference by default: a
    trained model's gradient with respect to its input, for saliency maps)."""
    x = _check_x("fran.vjp", spec, x)
    return layer_vjp(spec, params, x, state, as_rng(key), bool(training))[:2]


def vjp_with_state(spec, params, x, *, state=None, key=None, training=False):
    """(y, pullback, new state)."""
    x = _check_x("fran.vjp_with_state", spec, x)
    return layer_vjp(spec, params, x, state, as_rng(key), bool(training))


def sublayers(spec) -> tuple:
    """The layer specs held in spec's attrs fields (a network's layers, a residual's branches)."""
    found = []
    for field in attrs.fields(type(spec)) if attrs.has(type(spec)) else ():
        value = getattr(spec, field.name)
        for v in value if isinstance(value, tuple) else (value,):
            if attrs.has(type(v)) and type(v) in registry._BY_TYPE:
                found.append(v)
    return tuple(found)


def declares(spec, capability: str) -> bool:
    """Whether spec, or for a layer built of layers any layer inside it, declared a capability
    ("has_modes", "needs_rng", "init_state" or "batchwise") at registration."""
    inner = sublayers(spec)
    if inner:
        return any(declares(s, capability) for s in inner)
    value = getattr(registry.rules_for(spec), capability)
    return value is not None if capability == "init_state" else bool(value)


@functools.lru_cache(maxsize=256)
def whole_batch(spec) -> bool:
    """Whether training must see the batch whole: some layer inside is random, stateful or
    batchwise (cutting the batch would change its numbers with the thread count)."""
    return any(declares(spec, c) for c in ("needs_rng", "batchwise", "init_state"))


@functools.lru_cache(maxsize=256)
def random(spec) -> bool:
    """Whether some layer inside spec draws random numbers in training (needs a key)."""
    return declares(spec, "needs_rng")


def _check_layers(instance, attribute, layers) -> None:
    if not layers:
        raise ValueError("network: layers must be a non-empty sequence of layer specs")
    for i, layer in enumerate(layers):
        try:
            registry.rules_for(layer)
        except registry.RegistryError as exc:
            raise ValueError(f"network: layers[{i}] is not a layer spec: {exc}") from None


@attrs.frozen
class network:
    """A sequence of layers, itself a layer spec.

    The seed writes `network([...], 0, 0)`: the two numbers are the training counters the model
    starts from, `epoch` (completed passes over the data) and `step` (optimizer steps taken).
    `train_step` advances `step` and `train_nn` advances `epoch`; they seed the per-epoch shuffle
    and are saved with the model. They are bookkeeping, so they take no part in equality or hashing.
    """

    layers: tuple = attrs.field(converter=tuple, validator=_check_layers)
    epoch: int = attrs.field(default=0, validator=non_negative_int, eq=False)
    step: int = attrs.field(default=0, validator=non_negative_int, eq=False)


def _shapes(spec: network, shape: tuple) -> list[tuple]:
    """Per-sample shapes [input, after layer 0, after layer 1, ...]; errors name the layer."""
    shapes = [tuple(shape)]
    for i, layer in enumerate(spec.layers):
        try:
            shapes.append(output_shape(layer, shapes[-1]))
        except ValueError as exc:
            raise ValueError(
                f"network layer {i} ({layer!r}) cannot take a sample of shape {shapes[-1]}: {exc}"
            ) from None
    return shapes


def _net_output_shape(spec, shape):
    return _shapes(spec, shape)[-1]


def _net_init(spec, shape, rng):
    shapes = _shapes(spec, shape)
    rngs = rng.spawn(len(spec.layers))
    return tuple(
        registry.rules_for(layer).init(layer, s, r)
        for layer, s, r in zip(spec.layers, shapes[:-1], rngs, strict=True)
    )


def _net_init_state(spec, shape):
    shapes = _shapes(spec, shape)
    return tuple(_init_state(layer, s) for layer, s in zip(spec.layers, shapes, strict=False))


def _spawn(rng, n: int) -> list:
    return rng.spawn(n) if rng is not None else [None] * n


def serial_apply(layers, params, x, state, rng, training):
    """apply of a sequence of layers: a left fold threading x and each layer's state."""
    state = (None,) * len(layers) if state is None else state
    new_state = []
    for layer, p, s, r in zip(layers, params, state, _spawn(rng, len(layers)), strict=True):
        x, s = layer_apply(layer, p, x, s, r, training)
        new_state.append(s)
    return x, tuple(new_state)


def serial_vjp(layers, params, x, state, rng, training):
    """vjp of a sequence of layers: a forward fold collecting pullbacks (and the new states),
    and a pullback folding the cotangent back through them. pullback(gy, input_grad=False)
    passes input_grad=False on to the first layer."""
    state = (None,) * len(layers) if state is None else state
    pullbacks, new_state = [], []
    for layer, p, s, r in zip(layers, params, state, _spawn(rng, len(layers)), strict=True):
        x, pb, s = layer_vjp(layer, p, x, s, r, training)
        pullbacks.append(pb)
        new_state.append(s)

    def pullback(gy, input_grad=True):
        grads = []
        for i in range(len(pullbacks) - 1, -1, -1):
            g, gy = pull(pullbacks[i], gy, input_grad or i > 0)
            grads.append(g)
        return tuple(reversed(grads)), gy

    return x, pullback, tuple(new_state)


def _net_apply(spec, params, x, *, state, rng, training):
    return serial_apply(spec.layers, params, x, state, rng, training)


def _net_vjp(spec, params, x, *, state, rng, training):
    return serial_vjp(spec.layers, params, x, state, rng, training)


registry.register(
    "network",
    network,
    output_shape=_net_output_shape,
    init=_net_init,
    apply=_net_apply,
    vjp=_net_vjp,
    has_modes=True,
    needs_rng=True,
    init_state=_net_init_state,
)
