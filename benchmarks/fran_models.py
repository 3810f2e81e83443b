"""The benchmark's three networks in fran, and the calls bench.py times.

Each network mirrors the nn.Sequential of the same name in torch_models.py (bench.py asserts equal
parameter counts). Training is the public API exactly as the README shows it:
`train_nn(model, X, y, optimizer=adam(1e-3), batch_size=64)`; inference is `predict`.
This module must not import torch: the peak-memory child process for fran imports only this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fran import (
    Model,
    adam,
    conv2d,
    conv2d_transpose,
    dense,
    flatten,
    init_weights,
    maxpooling,
    network,
    predict,
    softmax,
    train_nn,
)

LR = 1e-3


def lenet5() -> network:
    """The seed's LeNet5: two tanh convs with max-pooling, three tanh dense layers, softmax."""
    return network(
        [
            conv2d(k=5, channels=6, activation="tanh"),
            maxpooling(2, 2),
            conv2d(k=3, channels=16, activation="tanh"),
            maxpooling(2, 2),
            flatten(),
            dense(120, activation="tanh"),
            dense(84, activation="tanh"),
            dense(10, activation="tanh"),
            softmax(),
        ]
    )


def fmnist_cnn() -> network:
    """The Fashion-MNIST CNN: two relu convs (32, 64) with max-pooling, dense 128, dense 10."""
    return network(
        [
            conv2d(k=3, channels=32, activation="relu"),
            maxpooling(2),
            conv2d(k=3, channels=64, activation="relu"),
            maxpooling(2),
            flatten(),
            dense(128, activation="relu"),
            dense(10),
            softmax(),
        ]
    )


def autoencoder() -> network:
    """The conv autoencoder: 28 -> 14 -> 7 by conv + pool, back up by two stride-2 transposes."""
    return network(
        [
            conv2d(k=3, channels=16, padding=1, activation="relu"),
            maxpooling(2),
            conv2d(k=3, channels=8, padding=1, activation="relu"),
            maxpooling(2),
            conv2d_transpose(k=2, channels=8, stride=2, activation="relu"),
            conv2d_transpose(k=2, channels=16, stride=2, activation="relu"),
            conv2d(k=3, channels=1, padding=1, activation="sigmoid"),
        ]
    )


ARCHITECTURES: dict[str, Callable[[], network]] = {
    "lenet5": lenet5,
    "fmnist_cnn": fmnist_cnn,
    "autoencoder": autoencoder,
}


def make_model(name: str, seed: int = 0) -> Model:
    """A freshly initialised float32 Model of the named architecture for 1x28x28 images."""
    return init_weights(ARCHITECTURES[name](), 28, 28, 1, seed=seed, dtype=np.float32)


def n_params(model: Model) -> int:
    """The number of trainable scalars."""
    return sum(a.size for layer in model.params for a in layer.values())


def train_epoch(model: Model, X: np.ndarray, target: np.ndarray, batch_size: int) -> Model:
    """One epoch of Adam(1e-3) with fran's default loss (cross-entropy after softmax, else mse)."""
    return train_nn(model, X, target, optimizer=adam(LR), batch_size=batch_size)


def warmup(model: Model, X: np.ndarray, target: np.ndarray, batch_size: int) -> Model:
    """One untimed training step on the first batch."""
    return train_epoch(model, X[:batch_size], target[:batch_size], batch_size)


def infer(model: Model, X: np.ndarray, batch_size: int) -> np.ndarray:
    """The network's outputs (softmax probabilities for the classifiers), batch by batch."""
    return predict(model, X, batch_size=batch_size)
