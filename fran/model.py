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
from fran.tree import tree_leaves, tree_size


@attrs.frozen(repr=False)
class Model:
    """An initialised network. `print(model)` shows its summary table."""

    spec: network
    params: tuple
    input_shape: tuple
    opt_state: Any = None
    seed: int = 0

    @property
    def epoch(self) -> int:
        return self.spec.epoch

    @property
    def step(self) -> int:
        return self.spec.step

    @property
    def dtype(self) -> np.dtype:
        leaves = tree_leaves(self.params)
        return leaves[0].dtype if leaves else np.dtype(np.float32)

    def __str__(self) -> str:
        return summary(self)

    def __repr__(self) -> str:
        n = tree_size(self.params)
        return (
            f"<fran Model: {len(self.spec.layers)} layers, input {self.input_shape}, "
            f"{n:,} params, epoch {self.epoch}, step {self.step}>"
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
        A Model with read-only params, counters as in the spec and no optimizer state yet.
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
        layers = [
            attrs.evolve(layer, weight_init=scheme)
            if getattr(layer, "weight_init", "absent") is None
            else layer
            for layer in spec.layers
        ]
        spec = attrs.evolve(spec, layers=layers)
    shape = _input_shape(spec, m_in, n_in, channels)
    params = engine.init(spec, shape, np.random.default_rng(seed), dtype=dtype)
    return Model(spec=spec, params=params, input_shape=shape, seed=int(seed))


def layer_name(layer) -> str:
    return registry.rules_for(layer).name


def summary(model: Model) -> str:
    """A table like Keras' model.summary(): each layer, its output shape, its parameter count."""
    shapes = engine._shapes(model.spec, model.input_shape)[1:]
    rows = [("#", "layer", "output shape", "params")]
    total = 0
    for i, (layer, shape, p) in enumerate(
        zip(model.spec.layers, shapes, model.params, strict=True)
    ):
        n = tree_size(p)
        total += n
        rows.append((str(i), repr(layer), str(shape), f"{n:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    line = "-" * (sum(widths) + 6)

    def fmt(r):
        return f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"

    out = [f"input {model.input_shape}, {model.dtype}", line, fmt(rows[0]), line]
    out += [fmt(r) for r in rows[1:]]
    out += [line, f"total params: {total:,}   epoch {model.epoch}, step {model.step}"]
    return "\n".join(out)
