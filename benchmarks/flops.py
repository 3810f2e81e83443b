"""The floating-point work of a fran network: the products of its convolutions and dense layers.

Convention (the same count serves fran and PyTorch, which run the same networks):
- a multiply-add (MAC) counts 2 floating-point operations;
- conv2d: OH * OW * O * C * k * k MACs per sample (each output pixel of each output channel is
  a dot product over C * k * k inputs); conv2d_transpose: H * W * C_in * C_out * k * k (each input
  pixel scatters a k x k patch to every output channel); dense: n_in * n_out;
- forward = 2 * MACs; training = forward + the weight-gradient product + the input-gradient
  product, each as many MACs as the forward one, except that the network's first layer computes
  no input gradient (fran's train_step asks it for none, and torch's input needs no gradient);
  inside a residual block, the first layer of each branch inherits the block's own flag;
- nothing else counts: bias adds, activations, pooling, batch norm, dropout, the loss and the
  optimizer are element-wise passes, O(size) rather than O(size * fan-in).

The layers are walked recursively (fran.engine.sublayers: a residual's branches, a nested network),
and the shapes come from fran.output_shape. This module imports neither torch nor the examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import fran
from fran.engine import sublayers
from fran.layers.conv2d import conv2d
from fran.layers.conv2d_transpose import conv2d_transpose
from fran.layers.dense import dense
from fran.layers.residual import residual


@dataclass(frozen=True)
class Product:
    """One layer's matrix-product work per sample."""

    layer: str  # the spec's repr
    in_shape: tuple
    out_shape: tuple
    macs: int  # forward multiply-adds per sample
    input_grad: bool  # whether training computes its input gradient

    @property
    def train_macs(self) -> int:
        return self.macs * (3 if self.input_grad else 2)


def layer_macs(spec, in_shape: tuple, out_shape: tuple) -> int | None:
    """Forward multiply-adds per sample of a product layer; None for any other layer."""
    if isinstance(spec, conv2d):
        C = in_shape[0]
        O, OH, OW = out_shape
        return OH * OW * O * C * spec.k * spec.k
    if isinstance(spec, conv2d_transpose):
        C, H, W = in_shape
        return H * W * C * spec.channels * spec.k * spec.k
    if isinstance(spec, dense):
        return in_shape[0] * spec.n_out
    return None


def _walk(layers, shape: tuple, input_grad: bool, out: list[Product]) -> tuple:
    """Append the products of a sequence of layers fed samples of `shape`; return its output."""
    for i, spec in enumerate(layers):
        flag = input_grad or i > 0
        out_shape = tuple(fran.output_shape(spec, shape))
        if isinstance(spec, residual):
            _walk(spec.layers, shape, flag, out)
            if spec.shortcut is not None:
                _walk(spec.shortcut, shape, flag, out)
        elif sublayers(spec):  # a nested network (or another layer built of layers, in order)
            _walk(sublayers(spec), shape, flag, out)
        else:
            macs = layer_macs(spec, shape, out_shape)
            if macs is not None:
                out.append(Product(repr(spec), shape, out_shape, macs, flag))
        shape = out_shape
    return shape


def products(spec, input_shape: tuple) -> list[Product]:
    """The product layers of a network spec (or a single layer), in order, with their MACs."""
    layers = spec.layers if isinstance(spec, fran.network) else (spec,)
    out: list[Product] = []
    _walk(layers, tuple(input_shape), False, out)
    return out


def forward_flops(spec, input_shape: tuple) -> int:
    """Floating-point operations of one sample's forward pass (2 per multiply-add)."""
    return 2 * sum(p.macs for p in products(spec, input_shape))


def train_flops(spec, input_shape: tuple) -> int:
    """Floating-point operations of one sample's training step: forward, weight and input grads."""
    return 2 * sum(p.train_macs for p in products(spec, input_shape))


def network_specs() -> dict:
    """Every benchmarked network's spec by name: the seed's three and the examples' three peers
    (those import the examples, and so need their matplotlib)."""
    from helpers import fran_models as fm  # tests/helpers: on sys.path (bench.py, or below)

    specs = {name: build() for name, build in fm.ARCHITECTURES.items()}
    for name in fm.PEERS:
        specs[name] = fm.peer_example(name).build()
    return specs


def table(n_images: int = 10_000) -> str:
    """A Markdown table of every network's GFLOP per epoch of n_images (training and inference)."""
    lines = [
        f"| network | products | MFLOP / image, forward | MFLOP / image, training "
        f"| GFLOP per training epoch of {n_images:,} |",
        "|---|---|---|---|---|",
    ]
    for name, spec in network_specs().items():
        shape = (1, 28, 28)
        f, t = forward_flops(spec, shape), train_flops(spec, shape)
        lines.append(
            f"| {name} | {len(products(spec, shape))} | {f / 1e6:.3f} | {t / 1e6:.3f} "
            f"| {t * n_images / 1e9:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    print(table())
