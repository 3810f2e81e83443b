"""LeNet-5 on MNIST: the seed's network, exactly, trained with Adam on the first 10,000 images.

    python examples/lenet5_mnist.py [--epochs 10] [--seed 0] [--out runs/lenet5_mnist]
                                    [--n-train 10000] [--batch-size 64] [--lr 1e-3] [--resume]

The seed puts tanh on the 10 outputs too, so the logits stay in [-1, 1]: no class can get more
than e^2 / (e^2 + 9) = 45% probability and the cross-entropy cannot fall below 0.80. That is why
the test loss ends near 0.84 at 97.8% accuracy.

Writes learning_curve.png, confusion_matrix.png, misclassified.png, metrics.json and model.npz
into --out (see examples/_common.py). Get the data first with
`python -m fran.data fetch mnist`.
"""

from __future__ import annotations

import _common

import fran.data
from fran import conv2d, dense, flatten, maxpooling, network, softmax


def build() -> network:
    """The seed's LeNet-5 (tanh everywhere, tanh even on the 10 outputs before the softmax)."""
    return network(
        [
            conv2d(k=5, channels=6, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            conv2d(k=3, channels=16, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            flatten(),
            dense(n_out=120, activation="tanh"),
            dense(n_out=84, activation="tanh"),
            dense(n_out=10, activation="tanh"),
            softmax(),
        ],
        0,
        0,
    )


def load(split: str, n: int | None):
    return fran.data.load_mnist(split, n=n)


EXAMPLE = _common.Example(
    name="lenet5_mnist",
    title="LeNet-5 on MNIST",
    build=build,
    load=load,
    class_names=_common.DIGITS,
)


def main(argv: list[str] | None = None) -> dict:
    """Train and report; returns the metrics written to metrics.json."""
    return _common.run(EXAMPLE, argv)


if __name__ == "__main__":
    _common.cli(main)
