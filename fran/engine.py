"""The engine: init/apply/vjp/output_shape dispatched through the registry, and the network spec.

A network is itself a registered layer whose rules are folds over its layers' rules:
apply is a left fold; vjp is a left fold that collects pullbacks, and its pullback a right fold
that threads the cotangent backwards and gathers each layer's gradients into a tuple.
"""

from __future__ import annotations

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
    params = registry.rules_for(spec).init(spec, tuple(shape), as_generator(rng))
    return freeze(tree_map(lambda a: np.array(a, dtype=dtype), params))


def apply(spec, params, x):
    """The layer's output for a batch x."""
    return registry.rules_for(spec).apply(spec, params, x)


def vjp(spec, params, x):
    """(y, pullback) with pullback(gy) -> (gparams, gx), gparams shaped like params."""
    return registry.rules_for(spec).vjp(spec, params, x)


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


def _net_apply(spec, params, x):
    for layer, p in zip(spec.layers, params, strict=True):
        x = registry.rules_for(layer).apply(layer, p, x)
    return x


def serial_vjp(layers, params, x, *, input_grad: bool = True):
    """vjp of a sequence of layers: forward fold collecting pullbacks, backward fold over them.

    With input_grad=False the pullback returns gx=None and lets a first layer registered with
    skips_input_grad skip computing it (training never needs the gradient of the data).
    """
    pullbacks = []
    for layer, p in zip(layers, params, strict=True):
        x, pb = registry.rules_for(layer).vjp(layer, p, x)
        pullbacks.append(pb)
    first_skips = not input_grad and registry.rules_for(layers[0]).skips_input_grad

    def pullback(gy):
        grads = []
        for i in range(len(pullbacks) - 1, -1, -1):
            g, gy = (
                pullbacks[i](gy, input_grad=False) if i == 0 and first_skips else pullbacks[i](gy)
            )
            grads.append(g)
        return tuple(reversed(grads)), (gy if input_grad else None)

    return x, pullback


def _net_vjp(spec, params, x):
    return serial_vjp(spec.layers, params, x)


registry.register(
    "network",
    network,
    output_shape=_net_output_shape,
    init=_net_init,
    apply=_net_apply,
    vjp=_net_vjp,
)
