"""2-D convolution (cross-correlation, as torch.nn.functional.conv2d) followed by an activation.

forward: z[n,o] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c, s*r+i, s*q+j];  y = act(z)
as matrices: cols = im2col(x) (C*k*k, N*OH*OW);  Z = W2 @ cols + b,  W2 = w.reshape(O, C*k*k)
vjp: dZ = act'(z) * dy;  dw = dZ @ cols.T;  db = dZ.sum(cols);  dx = col2im(W2.T @ dZ)
(the input gradient is a transposed convolution of dy, which is conv2d_transpose's forward).
With stride 1 and fewer outputs than inputs (O < C) the layer skips im2col and computes the same
three products on the output side: P = Wt @ X, z = sum of k*k shifted slices of P, and back
through D, the shifted copies of dZ: dw from D @ X.T, dx = Wt.T @ D (see _im2col).
Layout: x (N, C, H, W), w (O, C, k, k) (OIHW), b (O,); OH = floor((H + 2p - k) / s) + 1.
"""

from __future__ import annotations

import attrs
import numpy as np

from fran import registry
from fran.layers import _init
from fran.layers._im2col import (
    batch_first,
    channels_first,
    col2im,
    conv_input_grad_stride1,
    conv_out,
    im2col,
    in_corner,
    matmul_wide,
    matmul_wide_t,
    padded_rows,
    shifted_spread,
    shifted_sum,
)
from fran.layers._validators import compact_repr, non_negative_int, one_of, positive_int
from fran.layers.activations import ACTIVATIONS


@attrs.frozen
class conv2d:
    """A k x k convolution to `channels` feature maps (zero padding, stride), then `activation`."""

    __repr__ = compact_repr
    k: int = attrs.field(validator=positive_int)
    channels: int = attrs.field(validator=positive_int)
    stride: int = attrs.field(default=1, validator=positive_int)
    padding: int = attrs.field(default=0, validator=non_negative_int)
    activation: str = attrs.field(default="identity", validator=one_of(ACTIVATIONS, "activation"))
    weight_init: str | None = attrs.field(default=None, validator=_init.valid_scheme)


def output_shape(spec, shape):
    C, H, W = _image_shape(spec, shape)
    OH, OW = (
        conv_out(H, spec.k, spec.stride, spec.padding),
        conv_out(W, spec.k, spec.stride, spec.padding),
    )
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{spec!r}: input of height x width {H} x {W} is smaller than the {spec.k} x {spec.k} "
            f"kernel with padding {spec.padding}"
        )
    return (spec.channels, OH, OW)


def _image_shape(spec, shape):
    if len(shape) != 3:
        raise ValueError(
            f"{spec!r}: expects a (channels, height, width) sample, got shape {tuple(shape)}"
        )
    return shape


def init(spec, shape, rng):
    C, _, _ = _image_shape(spec, shape)
    k2 = spec.k * spec.k
    w = _init.draw(spec, (spec.channels, C, spec.k, spec.k), C * k2, spec.channels * k2, rng)
    return {"w": w, "b": _init.bias(spec, spec.channels, C * k2, rng)}


def _forward(spec, params, x):
    N, C, H, W = x.shape
    O = spec.channels
    OH, OW = (
        conv_out(H, spec.k, spec.stride, spec.padding),
        conv_out(W, spec.k, spec.stride, spec.padding),
    )
    cols = im2col(x, spec.k, spec.stride, spec.padding)
    z = matmul_wide(params["w"].reshape(O, -1), cols)  # in column blocks: faster
    z += params["b"].reshape(O, 1)
    return cols, z, (N, C, H, W, OH, OW)


def _forward_output_side(spec, params, x):
    """The same z for stride 1 from X (C, N*Hp*Wp) without im2col (see _im2col.shifted_sum)."""
    N, C, H, W = x.shape
    O, k, p = spec.channels, spec.k, spec.padding
    Hp, Wp = H + 2 * p, W + 2 * p
    OH, OW = Hp - k + 1, Wp - k + 1
    X = padded_rows(x, p)
    wt = params["w"].transpose(2, 3, 0, 1).reshape(k * k * O, C)
    P = matmul_wide(wt, X).reshape(k * k, O, -1)
    z = shifted_sum(P, k, Wp).reshape(O, N, Hp, Wp)[:, :, :OH, :OW]
    z = z + params["b"].reshape(O, 1, 1, 1)  # a compact (O, N, OH, OW) array
    return (X, wt), z.reshape(O, -1), (N, C, H, W, OH, OW)


def _backward(spec, params, cols, dz, dims, input_grad):
    N, C, H, W, OH, OW = dims
    O, k, s, p = spec.channels, spec.k, spec.stride, spec.padding
    grads = {"w": matmul_wide_t(dz, cols).reshape(params["w"].shape), "b": dz.sum(axis=1)}
    if not input_grad:
        return grads, None
    w2 = params["w"].reshape(O, -1)
    if s == 1:  # the same as the col2im below, in long contiguous adds (faster)
        dx = conv_input_grad_stride1(w2, dz, N, OH, OW, k)
    else:
        dx = col2im(w2.T @ dz, C, N, OH, OW, k, s, H + 2 * p, W + 2 * p)
    return grads, dx[:, :, p : p + H, p : p + W].transpose(1, 0, 2, 3)


def _backward_output_side(spec, params, saved, dz, dims, input_grad):
    X, wt = saved
    N, C, H, W, OH, OW = dims
    O, k, p = spec.channels, spec.k, spec.padding
    Hp, Wp = H + 2 * p, W + 2 * p
    D = shifted_spread(in_corner(dz, N, OH, OW, Hp, Wp), k, Wp)
    dwt = matmul_wide_t(D, X).reshape(k, k, O, C)
    grads = {"w": np.ascontiguousarray(dwt.transpose(2, 3, 0, 1)), "b": dz.sum(axis=1)}
    if not input_grad:
        return grads, None
    dX = matmul_wide(wt.T, D).reshape(C, N, Hp, Wp)
    return grads, dX[:, :, p : p + H, p : p + W].transpose(1, 0, 2, 3)


def _passes(spec, C):
    """(forward, backward): on the output side for stride 1 with fewer outputs than inputs
    (multiply first, shift after: fewer rows), else through im2col."""
    if spec.stride == 1 and spec.channels < C:
        return _forward_output_side, _backward_output_side
    return _forward, _backward


def apply(spec, params, x):
    forward, _ = _passes(spec, x.shape[1])
    _, z, (N, _, _, _, OH, OW) = forward(spec, params, x)
    return batch_first(ACTIVATIONS[spec.activation].f(z), N, OH, OW)


def vjp(spec, params, x):
    act = ACTIVATIONS[spec.activation]
    forward, backward = _passes(spec, x.shape[1])
    saved, z, dims = forward(spec, params, x)
    y = act.f(z)

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, channels_first(dy))
        return backward(spec, params, saved, dz, dims, input_grad)

    N, _, _, _, OH, OW = dims
    return batch_first(y, N, OH, OW), pullback


registry.register(
    "conv2d",
    conv2d,
    output_shape=output_shape,
    init=init,
    apply=apply,
    vjp=vjp,
)
