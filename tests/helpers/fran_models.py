"""The benchmark's networks in fran, and the calls benchmarks/bench.py times.

The seed's three networks mirror the nn.Sequential of the same name in torch_models.py (its
check_param_counts and check_twin_shapes, which bench.py runs before timing, assert equal
parameter counts and layer shapes). Training is the public API exactly as the README
shows it: `train_nn(model, X, y, optimizer=adam(1e-3), batch_size=64)`; inference is `predict`.

The three peer networks (PEERS) are the examples' own: examples/pytorch_mnist.py, keras_mnist.py
and resnet_fmnist.py, each example's build(), PyTorch's default initialisation (scheme "torch")
and the example's optimizer (with its schedule for a one-epoch run) and batch size; their twins are
peer_twins.py's TORCH_NETS. The examples are imported only when a peer is asked for.
This module must not import torch: the peak-memory child process for fran imports only this.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

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
from fran.tree import tree_leaves

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
    return sum(a.size for a in tree_leaves(model.params))


def train_epoch(model: Model, X: np.ndarray, target: np.ndarray, batch_size: int) -> Model:
    """One epoch of Adam(1e-3) with fran's default loss (cross-entropy after softmax, else mse)."""
    return train_nn(model, X, target, optimizer=adam(LR), batch_size=batch_size)


def warmup(model: Model, X: np.ndarray, target: np.ndarray, batch_size: int) -> Model:
    """One untimed training step on the first batch."""
    return train_epoch(model, X[:batch_size], target[:batch_size], batch_size)


def infer(model: Model, X: np.ndarray, batch_size: int) -> np.ndarray:
    """The network's outputs (softmax probabilities for the classifiers), batch by batch."""
    return predict(model, X, batch_size=batch_size)


# ---------------------------------------------------------------- the peer networks

PEERS = ("pytorch_mnist", "keras_mnist", "resnet_fmnist")
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def peer_example(name: str):
    """The example module of a peer network (examples/ goes on sys.path, as peer_twins.py does)."""
    if name not in PEERS:
        raise KeyError(f"unknown peer network {name!r}; known: {', '.join(PEERS)}")
    if str(EXAMPLES_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLES_DIR))
    return importlib.import_module(name)


def peer_batch_size(name: str) -> int:
    """The example's own batch size (64, 128, 128)."""
    return peer_example(name).EXAMPLE.batch_size


def make_peer_model(name: str, seed: int = 0) -> Model:
    """The example's network from PyTorch's default initialisation, float32, 1x28x28 inputs."""
    ex = peer_example(name).EXAMPLE
    return init_weights(ex.build(), 28, 28, 1, scheme="torch", seed=seed, dtype=np.float32)


def peer_optimizer(name: str, steps_per_epoch: int, epochs: int = 1):
    """The example's optimizer at its default learning rate, its schedule set for `epochs`."""
    ex = peer_example(name).EXAMPLE
    return ex.optimizer(argparse.Namespace(lr=ex.lr, epochs=epochs), steps_per_epoch)


def train_peer_epoch(model: Model, X: np.ndarray, y: np.ndarray, optimizer, batch_size: int):
    """One epoch with the example's optimizer (its state, and the schedule's step, in the model)."""
    return train_nn(model, X, y, optimizer=optimizer, batch_size=batch_size)


def warmup_peer(model: Model, X: np.ndarray, y: np.ndarray, optimizer, batch_size: int) -> Model:
    """One untimed training step on the first batch, with the optimizer the epoch will use."""
    return train_nn(
        model, X[:batch_size], y[:batch_size], optimizer=optimizer, batch_size=batch_size
    )
