"""An activation as a layer of its own, so that conv2d -> batchnorm -> relu can be written:
y = f(x) elementwise, with the same names and rules as the `activation=` argument.

vjp: dx = f'(x) * dy (fran.layers.activations). Params: {}.
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.layers.activations import ACTIVATIONS
from fran.validate import one_of


@attrs.frozen
class activation:
    name: str = attrs.field(validator=one_of(ACTIVATIONS, "activation"))


def apply(spec, params, x):
    return ACTIVATIONS[spec.name].f(x)


def vjp(spec, params, x):
    act = ACTIVATIONS[spec.name]
    y = act.f(x)

    def pullback(dy):
        return {}, act.vjp(x, y, dy)

    return y, pullback


registry.register("activation", activation, apply=apply, vjp=vjp, per_sample=True)
