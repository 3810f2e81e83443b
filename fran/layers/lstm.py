"""Long short-term memory, as torch.nn.LSTM(C, H, batch_first=True), h_0 = c_0 = 0, torch's gate
order (input, forget, cell, output) in the rows of the weights:

[a_i, a_f, a_g, a_o] = x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh
i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)
y = (h_1, ..., h_T)  (N, T, H)
vjp, backwards through time (dh, dc from the step after, 0 at T):
    dh += dy_t;  do = dh tanh c_t;  dc += dh o (1 - tanh^2 c_t);  di = dc g;  dg = dc i;
    df = dc c_{t-1};  da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)];
    dh = da w_hh;  dc = dc f;  dx_t = da w_ih;  dw_ih = sum_t da^T x_t,  dw_hh = sum_t da^T h_{t-1},
    db_ih = db_hh = sum_t da
Layout and init as torch: w_ih (4H, C), w_hh (4H, H), b_ih, b_hh (4H,), all U(+-1/sqrt H).
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers import _recurrent
from fran.layers._repr import compact_repr
from fran.layers.activations import ACTIVATIONS
from fran.validate import positive_int

sigmoid = ACTIVATIONS["sigmoid"].f


@attrs.frozen
class lstm:
    """An LSTM over a (T, C) sequence, giving every step's hidden state (T, hidden)."""

    __repr__ = compact_repr
    hidden: int = attrs.field(validator=positive_int)


def init(spec, shape, rng):  # torch's U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias
    return _recurrent.init(spec, shape, rng, gates=4)


def _forward(params, x):
    """hs, cs (N, T + 1, H) with h_0 = c_0 = 0 first, and the gates (N, T, 4H) as i, f, g, o."""
    N, T, C = x.shape
    H = params["w_hh"].shape[1]
    xw = x @ params["w_ih"].T + (params["b_ih"] + params["b_hh"])
    dtype = xw.dtype
    hs, cs = np.zeros((N, T + 1, H), dtype), np.zeros((N, T + 1, H), dtype)
    gates = np.empty((N, T, 4 * H), dtype)
    for t in range(T):
        a = xw[:, t] + hs[:, t] @ params["w_hh"].T
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H]), sigmoid(a[:, 3 * H :])
        g = np.tanh(a[:, 2 * H : 3 * H])
        gates[:, t] = np.concatenate([i, f, g, o], axis=1)
        cs[:, t + 1] = f * cs[:, t] + i * g
        hs[:, t + 1] = o * np.tanh(cs[:, t + 1])
    return hs, cs, gates


def apply(spec, params, x):
    return _forward(params, x)[0][:, 1:]


def vjp(spec, params, x):
    hs, cs, gates = _forward(params, x)
    N, T, C = x.shape
    H = spec.hidden

    def pullback(dy, input_grad=True):
        da = np.empty_like(gates, dtype=np.result_type(gates, dy))
        dh, dc = np.zeros_like(da[:, 0, :H]), np.zeros_like(da[:, 0, :H])
        for t in range(T - 1, -1, -1):
            i, f, g, o = (gates[:, t, k * H : (k + 1) * H] for k in range(4))
            tc = np.tanh(cs[:, t + 1])
            dh = dh + dy[:, t]
            dc = dc + dh * o * (1 - tc * tc)
            da[:, t, :H] = dc * g * i * (1 - i)
            da[:, t, H : 2 * H] = dc * cs[:, t] * f * (1 - f)
            da[:, t, 2 * H : 3 * H] = dc * i * (1 - g * g)
            da[:, t, 3 * H :] = dh * tc * o * (1 - o)
            dh = da[:, t] @ params["w_hh"]
            dc = dc * f
        rows = da.reshape(N * T, 4 * H)
        db = rows.sum(axis=0)
        grads = {
            "w_ih": rows.T @ x.reshape(N * T, C),
            "w_hh": rows.T @ hs[:, :-1].reshape(N * T, H),
            "b_ih": db,
            "b_hh": db.copy(),
        }
        return grads, (da @ params["w_ih"] if input_grad else None)

    return hs[:, 1:], pullback


registry.register(
    "lstm",
    lstm,
    output_shape=_recurrent.output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
