"""Softmax over the last axis: y = exp(x - max x) / sum exp(x - max x) (stable for any logits).

vjp: dx = y * (dy - sum(dy * y, -1)).  For training, cross_entropy fuses with a final softmax
and pulls (p - onehot) / N straight into the logits instead (see fran.losses).
Params: {}.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry


@attrs.frozen
class softmax:
    pass


def apply(spec, params, x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def vjp(spec, params, x):
    y = apply(spec, params, x)

    def pullback(dy):
        return {}, y * (dy - (dy * y).sum(axis=-1, keepdims=True))

    return y, pullback


registry.register("softmax", softmax, apply=apply, vjp=vjp, per_sample=True)
