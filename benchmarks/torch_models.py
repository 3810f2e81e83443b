"""The benchmark's three networks in idiomatic PyTorch, and the loops bench.py times.

Each network is a plain nn.Sequential with PyTorch's default initialisation, mirroring the fran
network of the same name in fran_models.py. The classifiers end at their logits (no softmax):
they are trained with nn.CrossEntropyLoss, and `infer` applies the softmax, as fran's `predict`
does. Training is the standard loop: a shuffled index permutation, x[idx] batches,
zero_grad / backward / step with torch.optim.Adam(lr=1e-3).

The peer networks' twins are benchmarks/peers.py's TORCH_NETS, trained as peers.py's torch_run
trains them (its torch_optimizer: the optimizer, the learning-rate schedule set per step, the
gradient clip), one epoch at a time (PeerTrainer); peers.py is imported only when asked for.
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


def _epoch(trainer, x: torch.Tensor, target: torch.Tensor, batch_size: int, step):
    """One epoch of step(trainer, xb, tb) over a fresh shuffle; the last batch may be smaller
    (drop_last=False)."""
    trainer.model.train()
    order = torch.randperm(len(x), generator=trainer.generator)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        step(trainer, x[idx], target[idx])
    return trainer


def train_epoch(
    trainer: Trainer, x: torch.Tensor, target: torch.Tensor, batch_size: int
) -> Trainer:
    """One epoch over a fresh shuffle; the last batch may be smaller (drop_last=False)."""
    return _epoch(trainer, x, target, batch_size, _step)


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


# ---------------------------------------------------------------- the peer networks' twins


@dataclass
class PeerTrainer:
    """A peer twin with its optimizer, schedule (lr(step) or None), clip norm and step count."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr: Callable[[int], float] | None
    clip: float | None
    loss_fn: nn.Module
    generator: torch.Generator
    step: int = 0


def make_peer_trainer(name: str, seed: int = 0, steps_per_epoch: int = 1, epochs: int = 1):
    """peers.py's twin of a peer network, seeded, with its optimizer for `epochs` epochs."""
    import peers  # torch, fran and the examples (their matplotlib): only when a peer is run

    torch.manual_seed(seed)
    model = peers.TORCH_NETS[name]()
    optimizer, lr, clip = peers.torch_optimizer(name, model.parameters(), steps_per_epoch, epochs)
    generator = torch.Generator().manual_seed(seed)
    return PeerTrainer(name, model, optimizer, lr, clip, nn.CrossEntropyLoss(), generator)


def _peer_step(trainer: PeerTrainer, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One step as peers.torch_run takes it: the scheduled rate, backward, clip, step."""
    if trainer.lr is not None:
        for group in trainer.optimizer.param_groups:
            group["lr"] = trainer.lr(trainer.step)
    trainer.optimizer.zero_grad()
    loss = trainer.loss_fn(trainer.model(xb), yb)
    loss.backward()
    if trainer.clip is not None:
        nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.clip)
    trainer.optimizer.step()
    trainer.step += 1


def train_peer_epoch(
    trainer: PeerTrainer, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> PeerTrainer:
    """One epoch over a fresh shuffle (the last batch may be smaller)."""
    return _epoch(trainer, x, y, batch_size, _peer_step)


def warmup_peer(
    trainer: PeerTrainer, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> PeerTrainer:
    """One untimed training step on the first batch."""
    trainer.model.train()
    _peer_step(trainer, x[:batch_size], y[:batch_size])
    return trainer
