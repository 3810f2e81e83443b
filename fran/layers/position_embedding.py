"""Learned position embedding, as GPT's wpe: a vector per position added to the sequence.

y[n, t] = x[n, t] + p[t]  for x (N, T, C) and p (T, C): T is the sample length the model was
initialised for (GPT's block size).   vjp: dx = dy,  dp = sum_n dy[n].
Init as torch.nn.Embedding: p ~ N(0, 1). Params: {"p": (T, C)}.
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.validate import sequence_sample


@attrs.frozen
class position_embedding:
    """x + p[t] at each position t of a (T, C) sample."""


def output_shape(spec, shape):
    return sequence_sample(spec, shape)


def init(spec, shape, rng):
    return {"p": rng.standard_normal(tuple(shape))}


def apply(spec, params, x):
    return x + params["p"]


def vjp(spec, params, x):
    def pullback(dy, input_grad=True):
        return {"p": dy.sum(axis=0)}, (dy if input_grad else None)

    return x + params["p"], pullback


registry.register(
    "position_embedding",
    position_embedding,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
