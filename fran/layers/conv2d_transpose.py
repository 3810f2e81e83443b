"""Transposed 2-D convolution (as torch.nn.functional.conv_transpose2d), then an activation.

It is the adjoint of conv2d, so it reuses conv2d's pieces the other way round:
forward: Z = col2im(W2.T @ X2) + b, with X2 = x as (C_in, N*H*W), W2 = w.reshape(C_in, C_out*k*k);
         each input pixel scatters a k x k patch of weights, overlaps summed; crop p per side.
vjp: dZ = act'(z) * dy;  dcols = im2col(dZ);  dw = X2 @ dcols.T;  db = dZ.sum;  dx = W2 @ dcols
(dx is conv2d's forward applied to dZ).
Layout: x (N, C_in, H, W), w (C_in, C_out, k, k) (torch order), b (C_out,);
out = (H - 1) s - 2p + k.
"""

from __future__ import annotations

import math

import attrs

from fran import registry
from fran.layers import _init
from fran.layers._im2col import batch_first, channels_first, col2im, im2col
from fran.layers._validators import compact_repr, non_negative_int, one_of, positive_int
from fran.layers.activations import ACTIVATIONS


@attrs.frozen
class conv2d_transpose:
    """A k x k transposed convolution to `channels` feature maps, then `activation`."""

    __repr__ = compact_repr
    k: int = attrs.field(validator=positive_int)
    channels: int = attrs.field(validator=positive_int)
    stride: int = attrs.field(default=1, validator=positive_int)
    padding: int = attrs.field(default=0, validator=non_negative_int)
    activation: str = attrs.field(default="identity", validator=one_of(ACTIVATIONS, "activation"))
    weight_init: str | None = attrs.field(default=None, validator=_init.valid_scheme)


def _out(spec, size):
    return (size - 1) * spec.stride - 2 * spec.padding + spec.k


def output_shape(spec, shape):
    if len(shape) != 3:
        raise ValueError(
            f"{spec!r}: expects a (channels, height, width) sample, got shape {tuple(shape)}"
        )
    _, H, W = shape
    if _out(spec, H) < 1 or _out(spec, W) < 1:
        raise ValueError(f"{spec!r}: padding {spec.padding} crops away the whole {H} x {W} output")
    return (spec.channels, _out(spec, H), _out(spec, W))


def init(spec, shape, rng):
    C = shape[0]
    taps = math.ceil(spec.k / spec.stride) ** 2  # inputs reaching one output pixel per channel
    fan_in = C * taps
    if _init.scheme_for(spec) == "torch":
        fan_in = spec.channels * spec.k * spec.k  # torch's own (transposed) convention
    w = _init.draw(spec, (C, spec.channels, spec.k, spec.k), fan_in, spec.channels * taps, rng)
    return {"w": w, "b": _init.bias(spec, spec.channels, fan_in, rng)}


def _forward(spec, params, x):
    N, C, H, W = x.shape
    O, k, s, p = spec.channels, spec.k, spec.stride, spec.padding
    cols = params["w"].reshape(C, -1).T @ channels_first(x)  # (O*k*k, N*H*W)
    full = col2im(cols, O, N, H, W, k, s, (H - 1) * s + k, (W - 1) * s + k)
    OH, OW = _out(spec, H), _out(spec, W)
    z = full[:, :, p : p + OH, p : p + OW] + params["b"].reshape(O, 1, 1, 1)  # (O, N, OH, OW)
    return z


def apply(spec, params, x):
    return ACTIVATIONS[spec.activation].f(_forward(spec, params, x)).transpose(1, 0, 2, 3)


def vjp(spec, params, x):
    act = ACTIVATIONS[spec.activation]
    z = _forward(spec, params, x)
    y = act.f(z)
    N, C, H, W = x.shape

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, dy.transpose(1, 0, 2, 3))  # (O, N, OH, OW)
        dcols = im2col(dz.transpose(1, 0, 2, 3), spec.k, spec.stride, spec.padding)
        w2 = params["w"].reshape(C, -1)
        dw = (channels_first(x) @ dcols.T).reshape(params["w"].shape)
        grads = {"w": dw, "b": dz.sum(axis=(1, 2, 3))}
        return grads, (batch_first(w2 @ dcols, N, H, W) if input_grad else None)

    return y.transpose(1, 0, 2, 3), pullback


registry.register(
    "conv2d_transpose",
    conv2d_transpose,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
)
