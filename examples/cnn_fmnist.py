"""A small ReLU CNN on Fashion-MNIST, trained with Adam on the first 10,000 images.

    python examples/cnn_fmnist.py [--epochs 10] [--seed 0] [--out runs/cnn_fmnist]
                                  [--n-train 10000] [--batch-size 64] [--lr 1e-3] [--resume]

conv 3x3 32 relu -> maxpool 2 -> conv 3x3 64 relu -> maxpool 2 -> dense 128 relu -> dense 10
-> softmax. Writes learning_curve.png, confusion_matrix.png, misclassified.png, metrics.json
and model.npz into --out. Get the data first with `python -m fran.data fetch fashion-mnist`.
"""

from __future__ import annotations

import _common

import fran.data
from fran import conv2d, dense, flatten, maxpooling, network, softmax


def build() -> network:
    return network(
        [
            conv2d(k=3, channels=32, activation="relu"),
            maxpooling(k=2),
            conv2d(k=3, channels=64, activation="relu"),
            maxpooling(k=2),
            flatten(),
            dense(n_out=128, activation="relu"),
            dense(n_out=10),
            softmax(),
        ]
    )


def load(split: str, n: int | None):
    return fran.data.load_fashion_mnist(split, n=n)


EXAMPLE = _common.Example(
    name="cnn_fmnist",
    title="CNN on Fashion-MNIST",
    build=build,
    load=load,
    class_names=_common.FASHION,
)


def main(argv: list[str] | None = None) -> dict:
    """Train and report; returns the metrics written to metrics.json."""
    return _common.run(EXAMPLE, argv)


if __name__ == "__main__":
    _common.cli(main)
