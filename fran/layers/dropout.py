"""Dropout, as torch.nn.Dropout(rate): in training each element is zeroed with probability
`rate` and the survivors are scaled by 1 / (1 - rate); at inference it is the identity.

training:  m ~ Bernoulli(1 - rate) elementwise,  y = x * m / (1 - rate),  dx = dy * m / (1 - rate)
inference: y = x,  dx = dy.   Params: {}.  The mask comes from the `rng` the network fold hands
this layer (fran.registry: needs_rng), so the same key gives the same mask.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._repr import compact_repr
from fran.validate import in_range


@attrs.frozen
class dropout:
    """Zeroes a fraction `rate` of the elements while training (rate is the drop probability)."""

    __repr__ = compact_repr

    rate: float = attrs.field(validator=in_range(0, 1, closed="left"))


def _scaled_mask(spec, x, rng):
    if rng is None:
        raise ValueError(f"{spec!r} in training needs randomness: pass key= (train_step does)")
    keep = rng.random(x.shape, dtype=np.float64) >= spec.rate
    return keep.astype(x.dtype) * np.asarray(1 / (1 - spec.rate), dtype=x.dtype)


def vjp(spec, params, x, *, training, rng):
    if not training or spec.rate == 0:
        return x, lambda dy: ({}, dy)
    mask = _scaled_mask(spec, x, rng)

    def pullback(dy):
        return {}, dy * mask

    return x * mask, pullback


# per sample: a sample's output depends on it and its own mask; a cut batch gives each piece
# its own key (fran.train.piece_key), so the masks depend on the piece count only
registry.register("dropout", dropout, vjp=vjp, has_modes=True, needs_rng=True, per_sample=True)
