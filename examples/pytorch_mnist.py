"""PyTorch's own MNIST example (pytorch/examples, mnist/main.py), rebuilt in fran.

    python examples/pytorch_mnist.py [--epochs 5] [--seed 0] [--out runs/pytorch_mnist]
                                     [--n-train 10000] [--batch-size 64] [--lr 1.0] [--resume]

conv 3x3 32 relu -> conv 3x3 64 relu -> maxpool 2 -> dropout 0.25 -> flatten -> dense 128 relu
-> dropout 0.5 -> dense 10 -> softmax, from PyTorch's default initialisation (--init torch);
Adadelta(lr 1.0) with the rate multiplied by 0.7 after every epoch (their StepLR(step_size=1,
gamma=0.7), here `step_decay(lr, step_size=steps_per_epoch, gamma=0.7)`), batch 64, inputs
normalised as (x - 0.1307) / 0.3081 as their transforms.Normalize does. Their script trains 14
epochs on all 60,000 images; the default here is 5 epochs on the first 10,000 (after 5 epochs
the rate is 0.7^5 = 0.17 of the start, and the test accuracy has stopped moving much).

Writes learning_curve.png, confusion_matrix.png, misclassified.png, metrics.json and model.npz
into --out (see examples/_common.py). Get the data first with `python -m fran.data fetch mnist`.
"""

from __future__ import annotations

import _common

import fran
import fran.data
from fran import conv2d, dense, dropout, flatten, maxpooling, network, softmax
from fran.schedules import step_decay

MEAN, STD = 0.1307, 0.3081  # MNIST's pixel mean and standard deviation, as in their script


def build() -> network:
    return network(
        [
            conv2d(k=3, channels=32, activation="relu"),
            conv2d(k=3, channels=64, activation="relu"),
            maxpooling(k=2),
            dropout(0.25),
            flatten(),
            dense(n_out=128, activation="relu"),
            dropout(0.5),
            dense(n_out=10),
            softmax(),
        ]
    )


def load(split: str, n: int | None):
    X, labels = fran.data.load_mnist(split, n=n)
    return (X - MEAN) / STD, labels


def optimizer(args, steps_per_epoch: int) -> fran.Optimizer:
    """Adadelta with the rate times 0.7 after every epoch (StepLR(step_size=1, gamma=0.7))."""
    return fran.adadelta(step_decay(args.lr, step_size=steps_per_epoch, gamma=0.7))


EXAMPLE = _common.Example(
    name="pytorch_mnist",
    title="PyTorch's MNIST example",
    build=build,
    load=load,
    class_names=_common.DIGITS,
    init="torch",
    optimizer=optimizer,
    optimizer_label="Adadelta (x0.7 per epoch)",
    epochs=5,
    batch_size=64,
    lr=1.0,
)


def main(argv: list[str] | None = None) -> dict:
    """Train and report; returns the metrics written to metrics.json."""
    return _common.run(EXAMPLE, argv)


if __name__ == "__main__":
    _common.cli(main)
