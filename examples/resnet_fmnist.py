"""A small ResNet on Fashion-MNIST: batchnorm, residual blocks, SGD + Nesterov, warm-up + cosine.

    python examples/resnet_fmnist.py [--epochs 5] [--seed 0] [--out runs/resnet_fmnist]
                                     [--n-train 10000] [--batch-size 128] [--lr 0.1] [--resume]

stem:    conv 3x3 16 pad 1 -> batchnorm -> relu                                     16 x 28 x 28
block 1: identity block, [conv 3x3 16 pad 1 -> bn -> relu -> conv 3x3 16 pad 1 -> bn] + x -> relu
block 2: stride-2 block, [conv 3x3 32 s2 pad 1 -> bn -> relu -> conv 3x3 32 pad 1 -> bn]
         + [conv 1x1 32 s2 -> bn] (a projection shortcut) -> relu                   32 x 14 x 14
head:    maxpool 2 -> flatten -> dense 10 -> softmax                                32 x 7 x 7

Trained with chain(clip_by_global_norm(5.0), sgd(schedule, momentum=0.9, nesterov=True,
weight_decay=5e-4)), the schedule a linear warm-up over the first half epoch into a cosine decay
to zero at the last step of --epochs: linear_warmup(cosine(lr, total_steps), warmup_steps). The
total is fixed by --epochs, so a run resumed to a larger --epochs follows a different schedule
from its resumed epoch on than the first run would have (resume to the same --epochs to finish a
run). Starts from fran's default initialisation (He normal for the relu convolutions).

Writes learning_curve.png, confusion_matrix.png, misclassified.png, metrics.json and model.npz
into --out. Get the data first with `python -m fran.data fetch fashion-mnist`.
"""

from __future__ import annotations

import _common

import fran
import fran.data
from fran import (
    activation,
    batchnorm,
    conv2d,
    dense,
    flatten,
    maxpooling,
    network,
    residual,
    softmax,
)
from fran.schedules import cosine, linear_warmup

CLIP, MOMENTUM, WEIGHT_DECAY = 5.0, 0.9, 5e-4


def block(channels: int, stride: int = 1, shortcut: bool = False) -> list:
    """A basic ResNet block: two 3x3 convolutions with batchnorm, the sum, then relu."""
    f = [
        conv2d(k=3, channels=channels, stride=stride, padding=1),
        batchnorm(),
        activation("relu"),
        conv2d(k=3, channels=channels, padding=1),
        batchnorm(),
    ]
    g = [conv2d(k=1, channels=channels, stride=stride), batchnorm()] if shortcut else None
    return [residual(f, shortcut=g), activation("relu")]


def build() -> network:
    return network(
        [
            conv2d(k=3, channels=16, padding=1),
            batchnorm(),
            activation("relu"),
            *block(16),
            *block(32, stride=2, shortcut=True),
            maxpooling(k=2),
            flatten(),
            dense(n_out=10),
            softmax(),
        ]
    )


def load(split: str, n: int | None):
    return fran.data.load_fashion_mnist(split, n=n)


def schedule(lr: float, epochs: int, steps_per_epoch: int):
    """Linear warm-up over the first half epoch, then cosine to 0 at the end of `epochs`."""
    warmup = max(1, steps_per_epoch // 2)
    return linear_warmup(cosine(lr, total_steps=epochs * steps_per_epoch - warmup), warmup)


def optimizer(args, steps_per_epoch: int) -> fran.Optimizer:
    return fran.chain(
        fran.clip_by_global_norm(CLIP),
        fran.sgd(
            schedule(args.lr, args.epochs, steps_per_epoch),
            momentum=MOMENTUM,
            nesterov=True,
            weight_decay=WEIGHT_DECAY,
        ),
    )


EXAMPLE = _common.Example(
    name="resnet_fmnist",
    title="Small ResNet on Fashion-MNIST",
    build=build,
    load=load,
    class_names=_common.FASHION,
    optimizer=optimizer,
    optimizer_label="SGD Nesterov 0.9, wd 5e-4, warm-up + cosine,",
    epochs=5,
    batch_size=128,
    lr=0.1,
)


def main(argv: list[str] | None = None) -> dict:
    """Train and report; returns the metrics written to metrics.json."""
    return _common.run(EXAMPLE, argv)


if __name__ == "__main__":
    _common.cli(main)
