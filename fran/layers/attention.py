"""Multi-head self-attention, as torch.nn.MultiheadAttention(C, heads, dropout, batch_first=True)
called as mha(x, x, x) (with attn_mask = the causal mask when causal=True):

[q, k, v] = x w_in^T + b_in, each (N, T, C) cut into `heads` heads of d = C / heads
s = q k^T / sqrt d  (per head, (T, T); s[i, j] = -inf for j > i when causal),  a = softmax_j s
in training each weight is dropped with probability `dropout`: a' = a m / (1 - dropout)
o = a' v (heads joined back to (T, C)),   y = o w_out^T + b_out
vjp: dw_out = sum dy^T o,  db_out = sum dy,  do = dy w_out (split into heads), then per head
    da' = do v^T,  dv = a'^T do,  da = da' m / (1 - dropout),  ds = a (da - sum_j da a),
    dq = ds k / sqrt d,  dk = ds^T q / sqrt d,  then dx = d[q,k,v] w_in,  dw_in = d[q,k,v]^T x
Layout and init as torch: w_in (3C, C) Xavier-uniform, b_in zeros (3C,), w_out (C, C)
U(+-1/sqrt C), b_out zeros (C,). The dropout mask comes from the layer's `rng`.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers._validators import compact_repr, positive_int


def _rate(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        raise ValueError(f"attention: dropout must be a number in [0, 1), got {value!r}")


def _flag(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"attention: {attribute.name} must be True or False, got {value!r}")


@attrs.frozen
class attention:
    """Self-attention of every position to every (or, causal, every earlier) position."""

    __repr__ = compact_repr
    heads: int = attrs.field(validator=positive_int)
    causal: bool = attrs.field(default=False, validator=_flag)
    dropout: float = attrs.field(default=0.0, validator=_rate)


def output_shape(spec, shape):
    if len(shape) != 2:
        raise ValueError(f"{spec!r}: expects a sequence sample (T, C), got shape {tuple(shape)}")
    if shape[1] % spec.heads:
        raise ValueError(f"{spec!r}: {spec.heads} heads must divide the {shape[1]} channels")
    return tuple(shape)


def init(spec, shape, rng):
    T, C = shape
    a_in, a_out = (6 / (C + 3 * C)) ** 0.5, C**-0.5
    return {
        "w_in": rng.uniform(-a_in, a_in, (3 * C, C)),
        "b_in": np.zeros(3 * C),
        "w_out": rng.uniform(-a_out, a_out, (C, C)),
        "b_out": np.zeros(C),
    }


def causal_mask(T: int) -> np.ndarray:
    """(T, T) booleans, True where position i may attend to j (j <= i)."""
    return np.tril(np.ones((T, T), dtype=bool))


def _heads(z, h):  # (N, T, C) -> (N, h, T, d)
    N, T, C = z.shape
    return z.reshape(N, T, h, C // h).transpose(0, 2, 1, 3)


def _join(z):  # (N, h, T, d) -> (N, T, C)
    N, h, T, d = z.shape
    return z.transpose(0, 2, 1, 3).reshape(N, T, h * d)


def apply(spec, params, x, *, training, rng):
    return vjp(spec, params, x, training=training, rng=rng)[0]


def vjp(spec, params, x, *, training, rng):
    N, T, C = x.shape
    h = spec.heads
    scale = np.asarray((C // h) ** -0.5, x.dtype)
    qkv = x @ params["w_in"].T + params["b_in"]
    q, k, v = (_heads(qkv[..., i * C : (i + 1) * C], h) for i in range(3))
    s = (q @ k.transpose(0, 1, 3, 2)) * scale
    if spec.causal:
        s = np.where(causal_mask(T), s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    a = np.exp(s)
    a /= a.sum(axis=-1, keepdims=True)  # a is our own fresh array
    if training and spec.dropout > 0:
        if rng is None:
            raise ValueError(f"{spec!r} in training needs randomness: pass key= (train_step does)")
        keep = rng.random(a.shape, dtype=np.float64) >= spec.dropout
        m = keep.astype(x.dtype) * np.asarray(1 / (1 - spec.dropout), x.dtype)
    else:
        m = None
    a_drop = a if m is None else a * m
    o = _join(a_drop @ v)
    y = o @ params["w_out"].T + params["b_out"]

    def pullback(dy, input_grad=True):
        rows = dy.reshape(N * T, C)
        grads = {"w_out": rows.T @ o.reshape(N * T, C), "b_out": rows.sum(axis=0)}
        do = _heads(dy @ params["w_out"], h)
        dv = a_drop.transpose(0, 1, 3, 2) @ do
        da = do @ v.transpose(0, 1, 3, 2)
        if m is not None:
            da = da * m
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True)) * scale  # masked entries: a = 0
        dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
        dqkv = np.concatenate([_join(dq), _join(dk), _join(dv)], axis=-1)
        flat = dqkv.reshape(N * T, 3 * C)
        grads = {"w_in": flat.T @ x.reshape(N * T, C), "b_in": flat.sum(axis=0), **grads}
        return grads, (dqkv @ params["w_in"] if input_grad else None)

    return y, pullback


registry.register(
    "attention",
    attention,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    has_modes=True,
    needs_rng=True,
    per_sample=True,
)
