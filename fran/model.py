"""A model is a value: a network spec, its params, its input shape and its optimizer state.

`init_weights` turns a network spec into a Model; training returns new Models; nothing mutates one.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from fran import engine, registry
from fran.engine import network
from fran.layers import _init
from fran.tree import tree_items, tree_leaves, tree_size


def _fresh_state(model) -> tuple:
    return engine.init_state(model.spec, model.input_shape, model.dtype)


@attrs.frozen(repr=False, eq=False)
class Model:
    """An initialised network. `print(model)` shows its summary table.

    Fields: the network spec, its params (trainable), its input shape, the optimizer state, the
    seed, the layers' state (running statistics: a tuple like params, {} for layers without),
    the training counters `epoch` and `step` (they start from the spec's, as in
    `network([...], 0, 0)`) and `dtype`. Two Models are equal (==) when all of these are, arrays
    compared element by element.
    """

    spec: network
    params: tuple
    input_shape: tuple
    opt_state: Any = None
    seed: int = 0
    _dtype: np.dtype = attrs.field(  # only for a network without params: theirs wins
        default=np.dtype(np.float32), converter=np.dtype, alias="dtype"
    )
    state: tuple = attrs.field(default=attrs.Factory(_fresh_state, takes_self=True))
    epoch: int = attrs.field(default=attrs.Factory(lambda self: self.spec.epoch, takes_self=True))
    step: int = attrs.field(default=attrs.Factory(lambda self: self.spec.step, takes_self=True))

    @property
    def dtype(self) -> np.dtype:
        """The dtype everything computes in: the params', or the one given at init_weights."""
        leaves = tree_leaves(self.params)
        return leaves[0].dtype if leaves else self._dtype

    def __eq__(self, other) -> bool:
        if type(other) is not Model:
            return NotImplemented
        same = (
            self.spec == other.spec
            and self.input_shape == other.input_shape
            and self.seed == other.seed
            and (self.epoch, self.step, self.dtype) == (other.epoch, other.step, other.dtype)
            and type(self.opt_state) is type(other.opt_state)
        )
        return same and all(
            _tree_equal(a, b)
            for a, b in (
                (self.params, other.params),
                (self.state, other.state),
                (self.opt_state, other.opt_state),
            )
        )

    __hash__ = None  # holds arrays

    def __str__(self) -> str:
        return summary(self)

    def __repr__(self) -> str:
        n = tree_size(self.params)
        return (
            f"<fran Model: {len(self.spec.layers)} layers, input {self.input_shape}, "
            f"{n:,} params, epoch {self.epoch}, step {self.step}>"
        )


def _tree_equal(a, b) -> bool:
    ia, ib = list(tree_items(a)), list(tree_items(b))
    return [p for p, _ in ia] == [p for p, _ in ib] and all(
        np.array_equal(x, y) for (_, x), (_, y) in zip(ia, ib, strict=True)
    )


def _input_shape(spec: network, m_in: int, n_in: int, channels: int) -> tuple:
    """(channels, m_in, n_in), or its flattened (channels*m_in*n_in,) if layer 0 takes vectors."""
    image = (channels, m_in, n_in)
    first = spec.layers[0]
    try:
        engine.output_shape(first, image)
        return image
    except ValueError as exc:
        vector = (math.prod(image),)
        try:
            engine.output_shape(first, vector)
        except ValueError:
            raise ValueError(
                f"init_weights: network layer 0 ({first!r}) cannot take a sample of shape {image} "
                f"(m_in={m_in}, n_in={n_in}, channels={channels}): {exc}"
            ) from None
        return vector


def _with_scheme(spec, scheme: str):
    """spec with weight_init=scheme on every layer that has none set, inside layers built of
    layers too (a residual's branches), so a scheme reaches every weight."""
    changes = {}
    if getattr(spec, "weight_init", "absent") is None:
        changes["weight_init"] = scheme
    inner = {id(layer) for layer in engine.sublayers(spec)}
    for field in attrs.fields(type(spec)) if inner else ():
        value = getattr(spec, field.name)
        if isinstance(value, tuple) and value and all(id(v) in inner for v in value):
            changes[field.name] = tuple(_with_scheme(v, scheme) for v in value)
    return attrs.evolve(spec, **changes) if changes else spec


def init_weights(
    model,
    m_in: int,
    n_in: int,
    channels: int = 1,
    *,
    scheme: str | None = None,
    seed: int = 0,
    dtype=np.float32,
) -> Model:
    """A new, initialised Model for inputs of `channels` x m_in x n_in.

    Args:
        model: a `network` spec (or a Model, which is re-initialised from its spec).
        m_in, n_in: the input's height and width. For an MLP on vectors of length n, pass
            (1, n): a network whose first layer takes vectors gets the flattened input.
        channels: the input's channels.
        scheme: weight initialisation for every layer that has none set: "glorot_uniform"
            ("xavier_uniform"), "glorot_normal", "he_uniform" ("kaiming_uniform"), "he_normal",
            "lecun_uniform", "lecun_normal" or "torch". None picks by activation (He for relu,
            Glorot uniform otherwise).
        seed: seeds the weights and, later, the per-epoch shuffle.
        dtype: float32 for training, float64 for gradient checks.
    Returns:
        A Model with read-only params and state, counters as in the spec and no optimizer
        state yet (train_step and train_nn make the optimizer's on first use).
    """
    spec = model.spec if isinstance(model, Model) else model
    if not isinstance(spec, network):
        raise TypeError(f"init_weights: model must be a fran.network, got {type(model).__name__}")
    for name, value in (("m_in", m_in), ("n_in", n_in), ("channels", channels)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"init_weights: {name} must be an integer >= 1, got {value!r}")
    if scheme is not None:
        if _init.canonical(scheme) not in _init.SCHEMES:
            raise ValueError(
                f"init_weights: unknown scheme {scheme!r}; known: "
                f"{', '.join(_init.SCHEMES + tuple(_init.ALIASES))}"
            )
        spec = _with_scheme(spec, scheme)
    shape = _input_shape(spec, m_in, n_in, channels)
    params = engine.init(spec, shape, np.random.default_rng(seed), dtype=dtype)
    return Model(spec=spec, params=params, input_shape=shape, seed=int(seed), dtype=dtype)


def layer_name(layer) -> str:
    return registry.rules_for(layer).name


def summary(model: Model) -> str:
    """A table like Keras' model.summary(): each layer, its output shape, its trainable parameter
    count and its state (non-trainable: running statistics) count, with totals."""
    shapes = engine.layer_shapes(model.spec.layers, model.input_shape)[1:]
    rows = [("#", "layer", "output shape", "params", "state")]
    total = total_state = 0
    for i, (layer, shape, p, st) in enumerate(
        zip(model.spec.layers, shapes, model.params, model.state, strict=True)
    ):
        n, m = tree_size(p), tree_size(st)
        total, total_state = total + n, total_state + m
        rows.append((str(i), repr(layer), str(shape), f"{n:,}", f"{m:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    line = "-" * (sum(widths) + 8)

    def fmt(r):
        return (
            f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  "
            f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}"
        )

    out = [f"input {model.input_shape}, {model.dtype}", line, fmt(rows[0]), line]
    out += [fmt(r) for r in rows[1:]]
    out += [
        line,
        f"trainable params: {total:,}   non-trainable (state): {total_state:,}   "
        f"epoch {model.epoch}, step {model.step}",
    ]
    return "\n".join(out)
