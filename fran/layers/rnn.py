"""Elman recurrent layer, as torch.nn.RNN(C, H, nonlinearity="tanh", batch_first=True), h_0 = 0:

h_t = tanh(x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh),   y = (h_1, ..., h_T)  (N, T, H)
vjp, backwards through time (t = T..1, carrying dh from the step after, 0 at T):
    da_t = (dy_t + dh) (1 - h_t^2);   dh = da_t w_hh;   dx_t = da_t w_ih;
    dw_ih = sum_t da_t^T x_t,  dw_hh = sum_t da_t^T h_{t-1},  db_ih = db_hh = sum_t da_t
Layout and init as torch: w_ih (H, C), w_hh (H, H), b_ih, b_hh (H,), all U(+-1/sqrt H).
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers import _recurrent
from fran.layers._repr import compact_repr
from fran.validate import positive_int


@attrs.frozen
class rnn:
    """A tanh recurrence over a (T, C) sequence, giving every step's hidden state (T, hidden)."""

    __repr__ = compact_repr
    hidden: int = attrs.field(validator=positive_int)


def init(spec, shape, rng):  # torch's U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias
    return _recurrent.init(spec, shape, rng, gates=1)


def _forward(params, x):
    """Every hidden state, h_0 = 0 first: hs (N, T + 1, H) with hs[:, t] = h_t."""
    N, T, C = x.shape
    xw = x @ params["w_ih"].T + (params["b_ih"] + params["b_hh"])  # every step's input at once
    hs = np.zeros((N, T + 1, params["w_hh"].shape[0]), dtype=np.result_type(x, xw))
    for t in range(T):
        hs[:, t + 1] = np.tanh(xw[:, t] + hs[:, t] @ params["w_hh"].T)
    return hs


def apply(spec, params, x):
    return _forward(params, x)[:, 1:]


def vjp(spec, params, x):
    hs = _forward(params, x)
    N, T, C = x.shape

    def pullback(dy, input_grad=True):
        da = np.empty_like(hs[:, 1:], dtype=np.result_type(hs, dy))
        dh = np.zeros_like(da[:, 0])
        for t in range(T - 1, -1, -1):
            h = hs[:, t + 1]
            da[:, t] = (dy[:, t] + dh) * (1 - h * h)
            dh = da[:, t] @ params["w_hh"]
        rows = da.reshape(N * T, -1)
        db = rows.sum(axis=0)
        grads = {
            "w_ih": rows.T @ x.reshape(N * T, C),
            "w_hh": rows.T @ hs[:, :-1].reshape(N * T, -1),
            "b_ih": db,
            "b_hh": db.copy(),
        }
        return grads, (da @ params["w_ih"] if input_grad else None)

    return hs[:, 1:], pullback


registry.register(
    "rnn",
    rnn,
    output_shape=_recurrent.output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
