"""Token embedding, as torch.nn.Embedding(vocab, dim): each token id picks a row of w.

y[n, t] = w[x[n, t]]  for ids x (N, T) and w (vocab, dim), so y is (N, T, dim).
vjp: dw[v] = sum of dy[n, t] over the positions with x[n, t] = v (a scatter-add);  the ids get
no gradient (dx = 0: the output does not move when an id is nudged less than half a unit).
Init as torch: w ~ N(0, 1). The spec declares `takes_ids = True`, so a network that starts with it
takes integer batches as they are (fran.engine.takes_ids: apply, vjp, train_step, train_nn,
predict and evaluate_nn skip the float check and the cast). Float ids are still accepted when
each lies within 1e-3 of an integer (the finite-difference check nudges them; a float32 holds
every integer below 2^24 exactly); any id outside [0, vocab), or a float farther from an
integer, raises naming the layer. Params: {"w": (vocab, dim)}.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from fran import registry
from fran.layers._repr import compact_repr
from fran.validate import positive_int, sample_shape

ID_TOLERANCE = 1e-3  # a float farther than this from an integer is not an id


@attrs.frozen
class embedding:
    """A learned vector per token id: (T,) ids -> (T, dim)."""

    __repr__ = compact_repr
    takes_ids: ClassVar[bool] = True  # its input is integer token ids (fran.engine.takes_ids)
    vocab: int = attrs.field(validator=positive_int)
    dim: int = attrs.field(validator=positive_int)


def output_shape(spec, shape):
    sample_shape(spec, shape, 1, "a sample of token ids (T,)")
    return (*shape, spec.dim)


def init(spec, shape, rng):
    return {"w": rng.standard_normal((spec.vocab, spec.dim))}


def token_ids(spec, x) -> np.ndarray:
    """x as integer ids, or a ValueError naming the layer and the offending value."""
    if x.dtype.kind in "iu":
        _check_range(spec, x)  # in x's own dtype: a uint64 above 2^63 must not wrap on the cast
        return x.astype(np.intp)
    if x.dtype == np.float32 and spec.vocab > 2**24:
        raise ValueError(f"{spec!r}: float32 cannot hold ids up to {spec.vocab} exactly")
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{spec!r}: token ids must be integers, got {float(x[~finite].flat[0])!r}")
    nearest = np.rint(x)
    far = np.abs(x - nearest) > ID_TOLERANCE
    if far.any():
        raise ValueError(f"{spec!r}: token ids must be integers, got {float(x[far].flat[0])!r}")
    _check_range(spec, nearest)  # before the cast: a float beyond intp must not wrap either
    return nearest.astype(np.intp)


def _check_range(spec, ids) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= spec.vocab):
        raise ValueError(
            f"{spec!r}: token ids must lie in [0, {spec.vocab}), got min {int(ids.min())} "
            f"max {int(ids.max())}"
        )


def apply(spec, params, x):
    return params["w"][token_ids(spec, x)]


def vjp(spec, params, x):
    ids = token_ids(spec, x)
    w = params["w"]

    def pullback(dy, input_grad=True):
        dw = np.zeros_like(w, dtype=np.result_type(w, dy))
        np.add.at(dw, ids.ravel(), dy.reshape(-1, spec.dim))
        return {"w": dw}, (np.zeros_like(x) if input_grad else None)

    return w[ids], pullback


registry.register(
    "embedding",
    embedding,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
