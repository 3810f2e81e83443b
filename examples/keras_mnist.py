"""Keras' "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet), rebuilt in fran.

    python examples/keras_mnist.py [--epochs 10] [--seed 0] [--out runs/keras_mnist]
                                   [--n-train 10000] [--batch-size 128] [--lr 1e-3] [--resume]

conv 3x3 32 relu -> maxpool 2 -> conv 3x3 64 relu -> maxpool 2 -> flatten -> dropout 0.5 ->
dense 10 -> softmax, from Keras' default initialisation (Glorot uniform, zero biases: --init
glorot_uniform); Adam 1e-3, batch 128, and validation_split=0.1: the LAST 10% of the training
images (taken before any shuffling, as Keras does) are held out and scored every epoch (val loss
and accuracy in the epoch line, metrics.json and the learning curve). Their script trains 15
epochs on all 60,000 images; the default here is 10 epochs on the first 10,000 (9,000 to train,
1,000 to validate).

Writes learning_curve.png, confusion_matrix.png, misclassified.png, metrics.json and model.npz
into --out (see examples/_common.py). Get the data first with `python -m fran.data fetch mnist`.
"""

from __future__ import annotations

import _common

import fran
import fran.data
from fran import conv2d, dense, dropout, flatten, maxpooling, network, softmax


def build() -> network:
    return network(
        [
            conv2d(k=3, channels=32, activation="relu"),
            maxpooling(k=2),
            conv2d(k=3, channels=64, activation="relu"),
            maxpooling(k=2),
            flatten(),
            dropout(0.5),
            dense(n_out=10),
            softmax(),
        ]
    )


def load(split: str, n: int | None):
    return fran.data.load_mnist(split, n=n)  # Keras' example scales to [0, 1], as this does


def optimizer(args, steps_per_epoch: int) -> fran.Optimizer:
    return fran.adam(args.lr)


EXAMPLE = _common.Example(
    name="keras_mnist",
    title="Keras' simple MNIST convnet",
    build=build,
    load=load,
    class_names=_common.DIGITS,
    init="glorot_uniform",
    optimizer=optimizer,
    epochs=10,
    batch_size=128,
    lr=1e-3,
    validation_split=0.1,
)


def main(argv: list[str] | None = None) -> dict:
    """Train and report; returns the metrics written to metrics.json."""
    return _common.run(EXAMPLE, argv)


if __name__ == "__main__":
    _common.cli(main)
