"""A residual block: y = f(x) + x, or y = f(x) + g(x) with a shortcut g (a projection such as
[conv2d(k=1, channels=32, stride=2), batchnorm()]); f and g are sequences of any layers.

vjp: dx = df^T(dy) + dg^T(dy) (dy itself for the identity shortcut); each branch's params and
state are its sequence's, under "f" and "g".
"""

from __future__ import annotations

import attrs

from fran import engine, registry


def _layer_list(instance, attribute, value) -> None:
    if value is None:
        return
    if not value:
        raise ValueError(f"residual: {attribute.name} must be a non-empty list of layer specs")
    for i, layer in enumerate(value):
        try:
            registry.rules_for(layer)
        except registry.RegistryError as exc:
            raise ValueError(
                f"residual: {attribute.name}[{i}] is not a layer spec: {exc}"
            ) from None


def _optional_tuple(value):
    return None if value is None else tuple(value)


@attrs.frozen
class residual:
    """f(x) + x, or f(x) + g(x) when a shortcut g is given."""

    layers: tuple = attrs.field(converter=tuple, validator=_layer_list)
    shortcut: tuple | None = attrs.field(
        default=None, converter=_optional_tuple, validator=_layer_list
    )


def _repr(spec) -> str:
    shortcut = "" if spec.shortcut is None else f", shortcut={list(spec.shortcut)!r}"
    return f"residual({list(spec.layers)!r}{shortcut})"


residual.__repr__ = _repr


def _branch_shapes(spec, shape):
    out_f = engine.layer_shapes(spec.layers, shape)[-1]
    out_g = shape if spec.shortcut is None else engine.layer_shapes(spec.shortcut, shape)[-1]
    return out_f, out_g


def output_shape(spec, shape):
    out_f, out_g = _branch_shapes(spec, tuple(shape))
    if out_f != out_g:
        which = "the identity shortcut" if spec.shortcut is None else "the shortcut"
        raise ValueError(
            f"{spec!r}: its layers give samples of shape {out_f} but {which} gives {out_g} "
            f"(for input {tuple(shape)})"
        )
    return out_f


def _branches(spec):
    return (("f", spec.layers),) + (() if spec.shortcut is None else (("g", spec.shortcut),))


def init(spec, shape, rng):
    rngs = rng.spawn(2)
    return {
        b: engine.serial_init(layers, shape, r)
        for (b, layers), r in zip(_branches(spec), rngs, strict=False)
    }


def init_state(spec, shape):
    return {b: engine.serial_init_state(layers, shape) for b, layers in _branches(spec)}


def param_shapes(spec, shape):
    return {b: engine.serial_param_shapes(layers, shape) for b, layers in _branches(spec)}


def state_shapes(spec, shape):
    return {b: engine.serial_state_shapes(layers, shape) for b, layers in _branches(spec)}


def _part(tree, branch):
    return None if tree is None else tree[branch]


def apply(spec, params, x, *, state, training=False, rng=None, batch=None):
    rngs = engine.spawn(rng, 2)
    y, new_state = x, {}
    for (b, layers), r in zip(_branches(spec), rngs, strict=False):
        out, new_state[b] = engine.serial_apply(
            layers, params[b], x, _part(state, b), r, training, batch
        )
        y = out if b == "f" else y + out
    return (y + x if spec.shortcut is None else y), new_state


def vjp(spec, params, x, *, state, training=False, rng=None, batch=None):
    rngs = engine.spawn(rng, 2)
    outs, pullbacks, new_state = {}, {}, {}
    for (b, layers), r in zip(_branches(spec), rngs, strict=False):
        outs[b], pullbacks[b], new_state[b] = engine.serial_vjp(
            layers, params[b], x, _part(state, b), r, training, batch
        )
    y = outs["f"] + (x if spec.shortcut is None else outs["g"])

    def pullback(dy, input_grad=True):
        grads, dx = {}, None if spec.shortcut is not None or not input_grad else dy
        for b, pb in pullbacks.items():
            grads[b], d = pb(dy, input_grad)
            dx = d if dx is None else (dx + d if d is not None else dx)
        return grads, dx

    return y, pullback, new_state


# a combinator: modes, a key and state only when a layer inside needs them, and per sample only
# when every layer inside is (fran.registry.capabilities); it passes batch= on (batch norm's sums)
registry.register(
    "residual",
    residual,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    init_state=init_state,
    param_shapes=param_shapes,
    state_shapes=state_shapes,
    per_sample=True,
    combinator=True,
    needs_batch=True,
)
