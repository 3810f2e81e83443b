"""The benchmark's three networks in idiomatic PyTorch, and the loops bench.py times.

Each network is a plain nn.Sequential with PyTorch's default initialisation, mirroring the fran
network of the same name in fran_models.py. The classifiers end at their logits (no softmax):
they are trained with nn.CrossEntropyLoss, and `infer` applies the softmax, as fran's `predict`
does. Training is the standard loop: a shuffled index permutation, x[idx] batches,
zero_grad / backward / step with torch.optim.Adam(lr=1e-3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LR = 1e-3


def lenet5() -> nn.Sequential:
    """The seed's LeNet5 (its final tanh output is the logits CrossEntropyLoss sees)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5),
        nn.Tanh(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, kernel_size=3),
        nn.Tanh(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, 10),
        nn.Tanh(),
    )


def fmnist_cnn() -> nn.Sequential:
    """The Fashion-MNIST CNN, ending at its logits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def autoencoder() -> nn.Sequential:
    """The conv autoencoder: 28 -> 14 -> 7 by conv + pool, back up by two stride-2 transposes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.ConvTranspose2d(8, 8, kernel_size=2, stride=2),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 16, kernel_size=2, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 1, kernel_size=3, padding=1),
        nn.Sigmoid(),
    )


ARCHITECTURES: dict[str, Callable[[], nn.Sequential]] = {
    "lenet5": lenet5,
    "fmnist_cnn": fmnist_cnn,
    "autoencoder": autoencoder,
}
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "lenet5": nn.CrossEntropyLoss,
    "fmnist_cnn": nn.CrossEntropyLoss,
    "autoencoder": nn.MSELoss,
}


@dataclass
class Trainer:
    """A model with its optimizer, loss and shuffle generator: what a training script holds."""

    name: str
    model: nn.Sequential
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    generator: torch.Generator


def make_trainer(name: str, seed: int = 0) -> Trainer:
    """A freshly initialised model (default init, seeded) with Adam(1e-3) and its loss."""
    torch.manual_seed(seed)
    model = ARCHITECTURES[name]()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    return Trainer(name, model, optimizer, LOSSES[name](), generator)


def n_params(trainer: Trainer) -> int:
    """The number of trainable scalars."""
    return sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)


def as_tensors(*arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
    """NumPy arrays as tensors sharing their memory (no copy)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def _step(trainer: Trainer, xb: torch.Tensor, tb: torch.Tensor) -> None:
    trainer.optimizer.zero_grad()
    loss = trainer.loss_fn(trainer.model(xb), tb)
    loss.backward()
    trainer.optimizer.step()


def train_epoch(
    trainer: Trainer, x: torch.Tensor, target: torch.Tensor, batch_size: int
) -> Trainer:
    """One epoch over a fresh shuffle; the last batch may be smaller (drop_last=False)."""
    trainer.model.train()
    order = torch.randperm(len(x), generator=trainer.generator)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        _step(trainer, x[idx], target[idx])
    return trainer


def warmup(trainer: Trainer, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> Trainer:
    """One untimed training step on the first batch."""
    trainer.model.train()
    _step(trainer, x[:batch_size], target[:batch_size])
    return trainer


def infer(trainer: Trainer, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The network's outputs (softmax probabilities for the classifiers), batch by batch."""
    model = trainer.model.eval()
    classifier = isinstance(trainer.loss_fn, nn.CrossEntropyLoss)
    outs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out = model(x[start : start + batch_size])
            outs.append(out.softmax(dim=1) if classifier else out)
    return torch.cat(outs)
