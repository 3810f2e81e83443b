"""Transposed 2-D convolution (as torch.nn.functional.conv_transpose2d), then an activation.

The adjoint of conv2d in x: each input pixel scatters a k x k patch of weights (overlaps summed),
p cropped per side: z[n,o, s*r+i-p, s*q+j-p] += w[c,o,i,j] x[n,c,r,q];  z += b;  y = act(z)
vjp: dz = act'(z) * dy;  dx = conv2d's forward of dz;  db[o] = sum dz[n,o];
     dw[c,o,i,j] = sum_{n,r,q} x[n,c,r,q] dz_pad[n,o, s*r+i, s*q+j].
Kernels (_conv, conv2d's the other way round, in plain products): correlate_input_grad gives z,
correlate gives dx and correlate_vjp dw (both from lay_out(dz)).
Layout: x (N, C_in, H, W), w (C_in, C_out, k, k) (torch order), b (C_out,); out = (H-1)s - 2p + k
"""

from __future__ import annotations

import attrs

from fran import registry
from fran.layers import _conv, _init
from fran.layers._repr import compact_repr
from fran.layers.activations import ACTIVATIONS
from fran.validate import image_sample, non_negative_int, one_of, positive_int


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


def output_shape(spec, shape):
    _, H, W = image_sample(spec, shape)
    OH, OW = ((n - 1) * spec.stride - 2 * spec.padding + spec.k for n in (H, W))
    if OH < 1 or OW < 1:
        raise ValueError(f"{spec!r}: padding {spec.padding} crops away the whole {H} x {W} output")
    return (spec.channels, OH, OW)


def init(spec, shape, rng):
    C = shape[0]
    taps = (-(-spec.k // spec.stride)) ** 2  # ceil(k/s)^2 inputs reach an output pixel per channel
    torch = _init.scheme_for(spec) == "torch"  # torch's own (transposed) convention for fan_in
    fan_in = spec.channels * spec.k * spec.k if torch else C * taps
    w = _init.draw(spec, (C, spec.channels, spec.k, spec.k), fan_in, spec.channels * taps, rng)
    return {"w": w, "b": _init.bias(spec, spec.channels, fan_in, rng)}


def param_shapes(spec, shape):
    return {"w": (shape[0], spec.channels, spec.k, spec.k), "b": (spec.channels,)}


def _forward(spec, params, x):  # z (C_out, N, OH, OW), channels first
    x4, size = x.transpose(1, 0, 2, 3), output_shape(spec, x.shape[1:])[1:]
    z = _conv.correlate_input_grad(x4, params["w"], spec.stride, spec.padding, size, plain=True)
    return z + params["b"].reshape(-1, 1, 1, 1)


def apply(spec, params, x):
    return ACTIVATIONS[spec.activation].f(_forward(spec, params, x)).transpose(1, 0, 2, 3)


def vjp(spec, params, x):
    act = ACTIVATIONS[spec.activation]
    z = _forward(spec, params, x)
    y = act.f(z)

    def pullback(dy, input_grad=True):
        dz = act.vjp(z, y, dy.transpose(1, 0, 2, 3))  # (O, N, OH, OW)
        w, s, p = params["w"], spec.stride, spec.padding
        tape = _conv.lay_out(dz.transpose(1, 0, 2, 3), w, s, p, plain=True)
        dw, _ = _conv.correlate_vjp(tape, _conv.channels_first(x), input_grad=False)
        grads = {"w": dw, "b": dz.sum(axis=(1, 2, 3))}
        return grads, (tape.as_nchw(_conv.correlate(tape)) if input_grad else None)

    return y.transpose(1, 0, 2, 3), pullback


registry.register(
    "conv2d_transpose",
    conv2d_transpose,
    output_shape=output_shape,
    init=init,
    param_shapes=param_shapes,
    apply=apply,
    vjp=vjp,
    per_sample=True,
)
