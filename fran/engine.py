"""The engine: init/init_state/apply/vjp/output_shape dispatched through the registry, and the
network spec.

A network is itself a registered layer whose rules are folds over its layers' rules: apply is a
left fold threading x and each layer's state; vjp is a left fold that collects pullbacks, and its
pullback a right fold that threads the cotangent backwards and gathers each layer's gradients
into a tuple. The fold gives each layer only what it declared (fran.registry): its mode, a
Generator spawned for its position from the caller's key, its own state, and, to a layer that
sums over the batch (needs_batch: batch norm), the batch it belongs to (`registry.WHOLE_BATCH` when
the batch is here whole; a lockstep piece's from fran.parallel when it is cut).

The fold's building blocks are public, for layers built of layers (fran.layers.residual, a
plugin's block) and for fran.io and fran.model: `layer_shapes`, `spawn`, `serial_init`,
`serial_init_state`, `serial_param_shapes`, `serial_state_shapes`, `serial_apply`, `serial_vjp`,
and one layer's `layer_init`, `layer_init_state`, `layer_apply`, `layer_vjp`, `pull`.
`param_shapes` and `state_shapes` report a spec's trees without allocating them: their leaves
are zero-stride, read-only arrays of the right shape and dtype (a "shape-only" tree), so that
`check_params` can check a caller's params on every call.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np

from fran import registry
from fran.tree import freeze, tree_map
from fran.validate import non_negative_int


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
    params = layer_init(spec, shape, as_generator(rng))
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


def takes_ids(spec) -> bool:
    """Whether spec's input is integer token ids: its spec class declares `takes_ids = True`
    (fran.layers.embedding does), or it is a network whose first layer takes ids."""
    if isinstance(spec, network):
        return takes_ids(spec.layers[0])
    return getattr(type(spec), "takes_ids", False) is True


def input_kinds(spec) -> str:
    """The dtype kinds a batch for spec may have: floats, and integers if it takes ids."""
    return "fiu" if takes_ids(spec) else "f"


def _check_x(fn: str, spec, x) -> np.ndarray:
    """x as a batch the spec accepts: an array of floats (or of integer ids, for a spec that
    takes_ids) of shape (N, *sample), or a clear error."""
    kinds = input_kinds(spec)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in kinds or x.ndim < 2:
        got = f"{type(x).__name__}" + (
            f" of dtype {x.dtype} and shape {x.shape}" if isinstance(x, np.ndarray) else ""
        )
        what = "a float or integer (token id)" if kinds != "f" else "a float"
        raise TypeError(f"{fn}: x must be {what} array of shape (N, *sample_shape), got {got}")
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
    state = layer_init_state(spec, shape)
    dtype = _check_dtype("fran.init_state", dtype)
    return freeze(tree_map(lambda a: np.array(a, dtype=dtype), state))


def layer_init(spec, shape, rng):
    """A layer's raw params (float64 as its init drew them) for per-sample `shape`."""
    return registry.rules_for(spec).init(spec, shape, rng)


def layer_init_state(spec, shape):
    """A layer's raw state for per-sample `shape` ({} for a layer without state)."""
    rules = registry.rules_for(spec)
    return {} if rules.init_state is None else rules.init_state(spec, shape)


def shape_only(shape, dtype=np.float64) -> np.ndarray:
    """A read-only array of `shape` and `dtype` that allocates nothing (one zero, zero strides)."""
    return np.broadcast_to(np.zeros((), dtype), tuple(int(n) for n in shape))


def _as_shape_only(tree, dtype):
    """A rule's shapes (a tree whose leaves are shape tuples or arrays) as a shape-only tree."""
    if isinstance(tree, dict):
        return {k: _as_shape_only(v, dtype) for k, v in tree.items()}
    if isinstance(tree, tuple) and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in tree
    ):
        return shape_only(tree, dtype)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_as_shape_only(v, dtype) for v in tree)
    return shape_only(np.shape(tree), dtype)


class _ShapeOnlyRng:
    """A stand-in Generator for a layer without a param_shapes rule: its draws are zero-stride
    views, so running its init costs no memory for what it draws; any other method is real."""

    def __init__(self):
        self._real = np.random.default_rng(0)

    def _view(self, size):
        return self._real.random() if size is None else np.broadcast_to(np.float64(0.0), size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._view(size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._view(size)

    def standard_normal(self, size=None, *args, **kwargs):
        return self._view(size)

    def random(self, size=None, *args, **kwargs):
        return self._view(size)

    def spawn(self, n: int) -> list:
        return [_ShapeOnlyRng() for _ in range(n)]

    def __getattr__(self, name):
        return getattr(self._real, name)


def layer_param_shapes(spec, shape, dtype=np.float64):
    """A layer's params as a shape-only tree: its param_shapes rule, or else its init run on a
    Generator whose draws are zero-stride views (a real one if the layer cannot take that)."""
    rules = registry.rules_for(spec)
    if rules.param_shapes is not None:
        return _as_shape_only(rules.param_shapes(spec, shape), dtype)
    try:
        params = rules.init(spec, shape, _ShapeOnlyRng())
    except (MemoryError, OverflowError):
        raise
    except Exception:  # an init that writes into its draws or needs a real Generator
        params = rules.init(spec, shape, np.random.default_rng(0))
    return _as_shape_only(params, dtype)


def layer_state_shapes(spec, shape, dtype=np.float64):
    """A layer's state as a shape-only tree: its state_shapes rule, or else its init_state's."""
    rules = registry.rules_for(spec)
    if rules.state_shapes is not None:
        return _as_shape_only(rules.state_shapes(spec, shape), dtype)
    return _as_shape_only(layer_init_state(spec, shape), dtype)


def param_shapes(spec, shape, dtype=np.float32):
    """The params tree `fran.init(spec, shape, dtype=dtype)` would give, without allocating it:
    the same structure, each leaf a read-only zero-stride array of the same shape and dtype."""
    shape = _check_shape("fran.param_shapes", spec, shape)
    return layer_param_shapes(spec, shape, _check_dtype("fran.param_shapes", dtype))


def state_shapes(spec, shape, dtype=np.float32):
    """The state tree `fran.init_state(spec, shape, dtype)` would give, as a shape-only tree."""
    shape = _check_shape("fran.state_shapes", spec, shape)
    return layer_state_shapes(spec, shape, _check_dtype("fran.state_shapes", dtype))


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


WHOLE_BATCH = registry.WHOLE_BATCH


def _options(rules, spec, state, rng, training, batch=None) -> dict:
    """The keywords a layer declared at registration, and only those (for a combinator: those
    some layer inside it needs, fran.registry.capabilities)."""
    kw = {}
    wants = registry.capabilities(spec) if rules.combinator else rules
    if wants.has_modes:
        kw["training"] = training
    if wants.needs_rng:
        kw["rng"] = rng
    if rules.needs_batch and (not rules.combinator or wants.sums_batch):
        kw["batch"] = WHOLE_BATCH if batch is None or not training else batch
    if rules.init_state is not None:
        if state is None and not sublayers(spec):  # a network or block folds None down
            raise ValueError(
                f"{spec!r} carries state (running statistics): pass state=, e.g. model.state "
                f"or fran.init_state(spec, shape)"
            )
        kw["state"] = state
    return kw


def layer_apply(spec, params, x, state=None, rng=None, training=False, batch=None):
    """(y, new state) for one layer of any kind: the one place that calls `rules.apply`.
    `batch`: the lockstep piece x is of (fran.parallel), None for a batch here whole."""
    rules = registry.rules_for(spec)
    out = rules.apply(spec, params, x, **_options(rules, spec, state, rng, training, batch))
    return out if rules.init_state is not None else (out, state)


def layer_vjp(spec, params, x, state=None, rng=None, training=False, batch=None):
    """(y, pullback, new state) for one layer of any kind: the one place that calls `rules.vjp`."""
    rules = registry.rules_for(spec)
    out = rules.vjp(spec, params, x, **_options(rules, spec, state, rng, training, batch))
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


_NO_STATE = object()


def check_params(fn: str, spec, params, shape, *, state=_NO_STATE) -> None:
    """Raise a ValueError naming fn, the layer (its position and spec) and the expected and found
    key or shape if params (or state, when given and not None) do not fit spec on samples of
    `shape`. The expected trees are shape-only (param_shapes) and cached per (spec, shape), so a
    call costs a walk over the leaves."""
    for what, tree in (("params", params), ("state", state)):
        if tree is _NO_STATE or (what == "state" and tree is None):
            continue
        try:
            expected = _expected_trees(spec, tuple(shape))
        except TypeError:  # an unhashable spec: derived afresh
            expected = _expected_trees.__wrapped__(spec, tuple(shape))
        found = _mismatch(expected[what == "state"], tree, ())
        if found is not None:
            raise ValueError(_mismatch_message(fn, what, spec, shape, *found)) from None


@functools.lru_cache(maxsize=256)
def _expected_trees(spec, shape):
    return layer_param_shapes(spec, shape), layer_state_shapes(spec, shape)


def _mismatch(expected, found, path):
    """(path, expected, found) at the first place found differs from the shape-only tree."""
    if isinstance(expected, dict):
        if not isinstance(found, dict) or found.keys() != expected.keys():
            return path, f"a dict with keys {sorted(expected)}", _describe(found)
        for k, v in expected.items():
            where = _mismatch(v, found[k], (*path, k))
            if where is not None:
                return where
        return None
    if isinstance(expected, tuple):
        if not isinstance(found, (tuple, list)) or len(found) != len(expected):
            return path, f"a tuple of {len(expected)}", _describe(found)
        for i, (v, f) in enumerate(zip(expected, found, strict=True)):
            where = _mismatch(v, f, (*path, i))
            if where is not None:
                return where
        return None
    if not isinstance(found, np.ndarray) or found.dtype.kind != "f":
        return path, f"a float array of shape {expected.shape}", _describe(found)
    if found.shape != expected.shape:
        return path, f"shape {expected.shape}", f"shape {found.shape}"
    return None


def _describe(tree) -> str:
    if isinstance(tree, dict):
        return f"a dict with keys {sorted(tree)}"
    if isinstance(tree, (tuple, list)):
        return f"a {type(tree).__name__} of {len(tree)}"
    if isinstance(tree, np.ndarray):
        return f"an array of dtype {tree.dtype} and shape {tree.shape}"
    return repr(tree) if tree is None else type(tree).__name__


def _mismatch_message(fn, what, spec, shape, path, expected, found) -> str:
    name = what + "".join(f"[{p!r}]" for p in path)
    if isinstance(spec, network) and path:
        layer = f"layer {path[0]} ({spec.layers[path[0]]!r})"
    else:
        layer = f"the layer {spec!r}" if not isinstance(spec, network) else "the network"
    return (
        f"{fn}: {name} of {layer} must be {expected} for samples of shape {tuple(shape)}, "
        f"found {found}"
    )


def apply(spec, params, x, *, state=None, key=None, training=False):
    """The output for a batch x; `training` picks the mode, `key` seeds any randomness.

    A layer with state (batch norm) reads `state`; in training its updated state is dropped
    here: use apply_with_state to keep it."""
    x = _check_x("fran.apply", spec, x)
    check_params("fran.apply", spec, params, x.shape[1:], state=state)
    return layer_apply(spec, params, x, state, as_rng(key), bool(training))[0]


def apply_with_state(spec, params, x, *, state=None, key=None, training=False):
    """(y, new state): apply that also returns the state the layers updated."""
    x = _check_x("fran.apply_with_state", spec, x)
    check_params("fran.apply_with_state", spec, params, x.shape[1:], state=state)
    return layer_apply(spec, params, x, state, as_rng(key), bool(training))


def vjp(spec, params, x, *, state=None, key=None, training=False):
    """(y, pullback), pullback(gy) -> (gparams, gx), in either mode (inference by default: a
    trained model's gradient with respect to its input, for saliency maps)."""
    x = _check_x("fran.vjp", spec, x)
    check_params("fran.vjp", spec, params, x.shape[1:], state=state)
    return layer_vjp(spec, params, x, state, as_rng(key), bool(training))[:2]


def vjp_with_state(spec, params, x, *, state=None, key=None, training=False):
    """(y, pullback, new state)."""
    x = _check_x("fran.vjp_with_state", spec, x)
    check_params("fran.vjp_with_state", spec, params, x.shape[1:], state=state)
    return layer_vjp(spec, params, x, state, as_rng(key), bool(training))


sublayers = registry.sublayers


def whole_batch(spec) -> bool:
    """Whether training must see the batch whole: some layer inside is not declared per sample,
    or is stateful, and does not declare that it couples the batch only through batch sums
    (needs_batch, as batch norm does). A random per-sample layer (dropout) is cut: each piece
    draws from its own key (fran.train.piece_key), a fixed number of pieces
    (fran.parallel.piece_cuts), so its numbers depend on neither threads nor ranks."""
    return not registry.capabilities(spec).cut_in_training


def sums_batch(spec) -> bool:
    """Whether a training batch cut into pieces runs them in lockstep: some layer inside sums
    over the batch (batch norm's statistics), fran.parallel adds each sum in piece order."""
    return registry.capabilities(spec).sums_batch


def whole_batch_inference(spec) -> bool:
    """Whether inference must see each batch whole: some layer inside is not per sample there."""
    return not registry.capabilities(spec).cut_in_inference


def random(spec) -> bool:
    """Whether some layer inside spec draws random numbers in training (needs a key)."""
    return registry.capabilities(spec).needs_rng


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


def layer_shapes(layers, shape: tuple) -> list[tuple]:
    """Per-sample shapes [input, after layer 0, after layer 1, ...] of a sequence of layers;
    an error names the layer that cannot take its input."""
    shapes = [tuple(shape)]
    for i, layer in enumerate(layers):
        try:
            shapes.append(output_shape(layer, shapes[-1]))
        except ValueError as exc:
            raise ValueError(
                f"network layer {i} ({layer!r}) cannot take a sample of shape {shapes[-1]}: {exc}"
            ) from None
    return shapes


def spawn(rng, n: int) -> list:
    """n independent Generators from rng (one per layer position), or n Nones without one."""
    return rng.spawn(n) if rng is not None else [None] * n


def serial_init(layers, shape, rng) -> tuple:
    """The raw params of a sequence of layers: each layer's init on its input shape, with a
    Generator spawned for its position."""
    shapes = layer_shapes(layers, shape)
    return tuple(
        layer_init(layer, s, r)
        for layer, s, r in zip(layers, shapes[:-1], rng.spawn(len(layers)), strict=True)
    )


def serial_init_state(layers, shape) -> tuple:
    """The raw states of a sequence of layers ({} for each layer without state)."""
    shapes = layer_shapes(layers, shape)
    return tuple(layer_init_state(layer, s) for layer, s in zip(layers, shapes[:-1], strict=True))


def serial_param_shapes(layers, shape, dtype=np.float64) -> tuple:
    """serial_init's tree as a shape-only tree (nothing allocated)."""
    shapes = layer_shapes(layers, shape)
    return tuple(
        layer_param_shapes(layer, s, dtype) for layer, s in zip(layers, shapes[:-1], strict=True)
    )


def serial_state_shapes(layers, shape, dtype=np.float64) -> tuple:
    """serial_init_state's tree as a shape-only tree."""
    shapes = layer_shapes(layers, shape)
    return tuple(
        layer_state_shapes(layer, s, dtype) for layer, s in zip(layers, shapes[:-1], strict=True)
    )


def serial_apply(layers, params, x, state, rng, training, batch=None):
    """apply of a sequence of layers: a left fold threading x and each layer's state."""
    state = (None,) * len(layers) if state is None else state
    new_state = []
    for layer, p, s, r in zip(layers, params, state, spawn(rng, len(layers)), strict=True):
        x, s = layer_apply(layer, p, x, s, r, training, batch)
        new_state.append(s)
    return x, tuple(new_state)


def serial_vjp(layers, params, x, state, rng, training, batch=None):
    """vjp of a sequence of layers: a forward fold collecting pullbacks (and the new states),
    and a pullback folding the cotangent back through them. pullback(gy, input_grad=False)
    passes input_grad=False on to the first layer."""
    state = (None,) * len(layers) if state is None else state
    pullbacks, new_state = [], []
    for layer, p, s, r in zip(layers, params, state, spawn(rng, len(layers)), strict=True):
        x, pb, s = layer_vjp(layer, p, x, s, r, training, batch)
        pullbacks.append(pb)
        new_state.append(s)

    def pullback(gy, input_grad=True):
        grads = []
        for i in range(len(pullbacks) - 1, -1, -1):
            g, gy = pull(pullbacks[i], gy, input_grad or i > 0)
            grads.append(g)
        return tuple(reversed(grads)), gy

    return x, pullback, tuple(new_state)


def _net_apply(spec, params, x, *, state, rng=None, training=False, batch=None):
    return serial_apply(spec.layers, params, x, state, rng, training, batch)


def _net_vjp(spec, params, x, *, state, rng=None, training=False, batch=None):
    return serial_vjp(spec.layers, params, x, state, rng, training, batch)


registry.register(
    "network",
    network,
    output_shape=lambda spec, shape: layer_shapes(spec.layers, shape)[-1],
    init=lambda spec, shape, rng: serial_init(spec.layers, shape, rng),
    apply=_net_apply,
    vjp=_net_vjp,
    init_state=lambda spec, shape: serial_init_state(spec.layers, shape),
    param_shapes=lambda spec, shape: serial_param_shapes(spec.layers, shape),
    state_shapes=lambda spec, shape: serial_state_shapes(spec.layers, shape),
    per_sample=True,  # the fold itself; fran.registry.capabilities asks its layers too
    combinator=True,
    needs_batch=True,  # passes batch= on to its layers
)
