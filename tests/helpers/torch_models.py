"""The benchmark's three networks in idiomatic PyTorch, the loops benchmarks/bench.py times, and
the checks that each twin does the work of its fran network.

Each network is a plain nn.Sequential with PyTorch's default initialisation, mirroring the fran
network of the same name in fran_models.py. The classifiers end at their logits (no softmax):
they are trained with nn.CrossEntropyLoss, and `infer` applies the softmax, as fran's `predict`
does. Training is the standard loop: a shuffled index permutation, x[idx] batches,
zero_grad / backward / step with torch.optim.Adam(lr=1e-3).

The peer networks' twins are peer_twins.py's TORCH_NETS, trained as benchmarks/peers.py's
torch_run trains them (peer_twins.torch_optimizer: the optimizer, the learning-rate schedule set
per step, the gradient clip), one epoch at a time (PeerTrainer); peer_twins.py (which imports the
examples) is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import fran
from helpers import fran_models as fm

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
    """peer_twins.py's twin of a peer network, seeded, with its optimizer for `epochs` epochs."""
    from helpers import peer_twins as peers  # the examples (their matplotlib): only when asked

    torch.manual_seed(seed)
    model = peers.TORCH_NETS[name]()
    optimizer, lr, clip = peers.torch_optimizer(name, model.parameters(), steps_per_epoch, epochs)
    generator = torch.Generator().manual_seed(seed)
    return PeerTrainer(name, model, optimizer, lr, clip, nn.CrossEntropyLoss(), generator)


def _peer_step(trainer: PeerTrainer, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One step as benchmarks/peers.py's torch_run takes it: scheduled rate, backward, clip, step."""
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


# ---------------------------------------------------------------- each twin does its network's work


def twins(name: str):
    """A fresh fran Model and its torch twin (a trainer holding `.model`), seed 0."""
    if name in fm.PEERS:
        return fm.make_peer_model(name), make_peer_trainer(name, steps_per_epoch=10)
    return fm.make_model(name), make_trainer(name)


def check_param_counts(names=tuple(fm.ARCHITECTURES)) -> dict[str, int]:
    """Assert fran's and torch's networks have identical parameter counts; return them."""
    counts = {}
    for name in names:
        model, trainer = twins(name)
        n_fran, n_torch = fm.n_params(model), n_params(trainer)
        if n_fran != n_torch:
            raise AssertionError(f"{name}: fran has {n_fran} params, torch {n_torch}")
        counts[name] = n_fran
    return counts


def torch_shapes(module, x) -> list[tuple]:
    """The per-sample shape after each module of an nn.Sequential, repeats (activations) dropped."""
    shapes = [tuple(x.shape[1:])]
    for m in module:
        x = m(x)
        if tuple(x.shape[1:]) != shapes[-1]:
            shapes.append(tuple(x.shape[1:]))
    return shapes


def fran_shapes(model) -> list[tuple]:
    """The per-sample shape after each fran layer, repeats (a final softmax) dropped."""
    shapes = [tuple(model.input_shape)]
    for spec in model.spec.layers:
        shape = tuple(fran.output_shape(spec, shapes[-1]))
        if shape != shapes[-1]:
            shapes.append(shape)
    return shapes


def check_twin_shapes(names=tuple(fm.ARCHITECTURES)) -> dict[str, list[tuple]]:
    """Assert each fran network and its torch twin produce the same shape after every layer
    (a residual block is one layer, as the twin's Residual module is one module), and the same
    output shape on a real batch (forward passes of 2 images, eval mode); return the shapes."""
    out = {}
    for name in names:
        model, trainer = twins(name)
        x = np.zeros((2, *model.input_shape), dtype=np.float32)
        with torch.no_grad():
            theirs = torch_shapes(trainer.model.eval(), torch.from_numpy(x))
            y_torch = tuple(trainer.model(torch.from_numpy(x)).shape)
        ours = fran_shapes(model)
        if ours != theirs:
            raise AssertionError(f"{name}: fran's layer shapes {ours} != torch's {theirs}")
        y_fran = fm.infer(model, x, 2).shape
        if y_fran != y_torch:
            raise AssertionError(f"{name}: fran outputs {y_fran}, torch {y_torch}")
        out[name] = ours
    return out
