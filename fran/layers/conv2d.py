"""2-D convolution (cross-correlation, as torch.nn.functional.conv2d) followed by an activation.

forward: z[n,o,r,q] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c, s*r+i, s*q+j];  y = act(z)
vjp: dz = act'(z) * dy;  dw[o,c,i,j] = sum_{n,r,q} dz[n,o,r,q] x_pad[n,c, s*r+i, s*q+j];
     db[o] = sum_{n,r,q} dz[n,o,r,q];  dx = the transposed convolution of dz (conv2d_transpose).
Kernels (_conv): lay_out arranges x for one matrix product (im2col, or the output side for
stride 1 with fewer outputs than inputs, or Winograd's F(2x2, 3x3) tiles for 3x3 stride 1 where
that pays), correlate_act computes z and y (the bias and the activation in one pass after the
product: fran.kernels.epilogue), correlate_vjp dw and dx.
Layout: x (N, C, H, W), w (O, C, k, k) (OIHW), b (O,); OH = floor((H + 2p - k) / s) + 1.
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.layers import _conv, _init
from fran.layers._repr import compact_repr
from fran.layers.activations import ACTIVATIONS
from fran.validate import image_sample, non_negative_int, one_of, positive_int


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
    _, H, W = image_sample(spec, shape)
    OH, OW = (_conv.conv_out(n, spec.k, spec.stride, spec.padding) for n in (H, W))
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{spec!r}: input of height x width {H} x {W} is smaller than the {spec.k} x {spec.k} "
            f"kernel with padding {spec.padding}"
        )
    return (spec.channels, OH, OW)


def init(spec, shape, rng):
    C, _, _ = image_sample(spec, shape)
    k2 = spec.k * spec.k
    w = _init.draw(spec, (spec.channels, C, spec.k, spec.k), C * k2, spec.channels * k2, rng)
    return {"w": w, "b": _init.bias(spec, spec.channels, C * k2, rng)}


def param_shapes(spec, shape):
    C = shape[0]
    return {"w": (spec.channels, C, spec.k, spec.k), "b": (spec.channels,)}


def apply(spec, params, x):
    tape = _conv.lay_out(x, params["w"], spec.stride, spec.padding)
    return tape.as_nchw(_conv.correlate_act(tape, params["b"], spec.activation)[1])


def vjp(spec, params, x):
    act = ACTIVATIONS[spec.activation]
    tape = _conv.lay_out(x, params["w"], spec.stride, spec.padding)
    z, y = _conv.correlate_act(tape, params["b"], spec.activation)

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, _conv.channels_first(dy))  # (O, N*OH*OW)
        dw, dx = _conv.correlate_vjp(tape, dz, input_grad)
        grads = {"w": dw, "b": dz.sum(axis=1)}
        return grads, (None if dx is None else dx.transpose(1, 0, 2, 3))

    return tape.as_nchw(y), pullback


registry.register(
    "conv2d",
    conv2d,
    output_shape=output_shape,
    init=init,
    param_shapes=param_shapes,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
