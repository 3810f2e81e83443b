"""A layer's rows rule on every position of a sequence: (N, T, C) is computed as N T rows."""

from __future__ import annotations

import functools


def over_positions(vjp):
    """vjp(spec, params, x) on (N, C) rows, lifted to take (N, T, C) sequences as well."""

    @functools.wraps(vjp)
    def lifted(spec, params, x):
        if x.ndim != 3:
            return vjp(spec, params, x)
        N, T, C = x.shape
        y, rows_pullback = vjp(spec, params, x.reshape(N * T, C))

        def pullback(dy, input_grad=True):
            grads, dx = rows_pullback(dy.reshape(N * T, -1), input_grad)
            return grads, (None if dx is None else dx.reshape(N, T, C))

        return y.reshape(N, T, -1), pullback

    return lifted
