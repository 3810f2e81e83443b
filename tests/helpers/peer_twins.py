"""fran's three peer examples and their PyTorch twins (examples/pytorch_mnist.py, keras_mnist.py,
resnet_fmnist.py): the twin networks, each example's optimizer in torch, the pairing of a twin's
modules with fran's layers (copy_into: fran's params into the twin), dropout fed fran's masks, and
the twin's training epoch. tests/oracle/test_peer_twins.py checks that each twin computes what
fran computes; benchmarks/peers.py and bench.py train them side by side.
"""

import contextlib
import importlib
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import fran

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

import keras_mnist  # noqa: E402, I001  (the examples folder is on the path only now)
import pytorch_mnist  # noqa: E402
import resnet_fmnist  # noqa: E402

NETWORKS = ("pytorch_mnist", "keras_mnist", "resnet_fmnist")
MODULES = {
    "pytorch_mnist": pytorch_mnist,
    "keras_mnist": keras_mnist,
    "resnet_fmnist": resnet_fmnist,
}


# ---------------------------------------------------------------- the PyTorch twins


def torch_pytorch_mnist() -> nn.Module:
    """PyTorch's examples/mnist Net as nn.Sequential (logits; their log_softmax+nll = CE)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )  # fmt: skip


def torch_keras_mnist() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10),
    )  # fmt: skip


class Residual(nn.Module):
    """y = f(x) + g(x) (g the identity when None), as fran's residual(layers, shortcut)."""

    def __init__(self, f: nn.Module, g: nn.Module | None = None):
        super().__init__()
        self.f, self.g = f, g

    def forward(self, x):
        return self.f(x) + (x if self.g is None else self.g(x))


def torch_block(c_in: int, channels: int, stride: int = 1, shortcut: bool = False) -> list:
    f = nn.Sequential(
        nn.Conv2d(c_in, channels, 3, stride=stride, padding=1), nn.BatchNorm2d(channels),
        nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
    )  # fmt: skip
    g = (
        nn.Sequential(nn.Conv2d(c_in, channels, 1, stride=stride), nn.BatchNorm2d(channels))
        if shortcut
        else None
    )
    return [Residual(f, g), nn.ReLU()]


def torch_resnet_fmnist() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        *torch_block(16, 16),
        *torch_block(16, 32, stride=2, shortcut=True),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


TORCH_NETS = {
    "pytorch_mnist": torch_pytorch_mnist,
    "keras_mnist": torch_keras_mnist,
    "resnet_fmnist": torch_resnet_fmnist,
}


def torch_optimizer(name: str, params, steps_per_epoch: int, epochs: int):
    """(optimizer, lr(step) or None, clip norm or None): the fran example's settings in torch."""
    ex = MODULES[name]
    if name == "pytorch_mnist":
        lr = fran.schedules.step_decay(1.0, step_size=steps_per_epoch, gamma=0.7)
        return torch.optim.Adadelta(params, lr=1.0), lr, None  # = StepLR(1, 0.7) per epoch
    if name == "keras_mnist":
        return torch.optim.Adam(params, lr=1e-3), None, None
    lr = ex.schedule(ex.EXAMPLE.lr, epochs, steps_per_epoch)
    opt = torch.optim.SGD(
        params, lr=lr(0), momentum=ex.MOMENTUM, nesterov=True, weight_decay=ex.WEIGHT_DECAY
    )
    return opt, lr, ex.CLIP


# ---------------------------------------------------------------- pairing a twin with a fran model


WITH_PARAMS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
KINDS = {fran.conv2d: nn.Conv2d, fran.dense: nn.Linear, fran.batchnorm: nn.BatchNorm2d}


def fran_parts(layers, params, state):
    """(layer, params, state) of every layer with params, in order, a residual's branches f then
    g: the order of the twin's modules()."""
    for layer, p, s in zip(layers, params, state, strict=True):
        if isinstance(layer, fran.residual):
            yield from fran_parts(layer.layers, p["f"], s["f"])
            if layer.shortcut is not None:
                yield from fran_parts(layer.shortcut, p["g"], s["g"])
        elif p:
            yield layer, p, s


def in_torch_layout(layer, p: dict) -> dict:
    """A fran layer's params (or gradients) under the twin module's names and layouts."""
    if isinstance(layer, fran.dense):
        return {"weight": p["w"].T, "bias": p["b"]}  # fran x @ w, w (in, out); torch (out, in)
    if isinstance(layer, fran.batchnorm):
        return {"weight": p["gamma"], "bias": p["beta"]}
    return {"weight": p["w"], "bias": p["b"]}  # conv: OIHW in both


def twin_pairs(model: fran.Model, net: nn.Module, params=None) -> list:
    """[(fran layer, its params (or `params`, e.g. gradients) in torch layout, its state, the
    twin's module)] for every layer with params; a ValueError if the two do not pair up."""
    mods = [m for m in net.modules() if isinstance(m, WITH_PARAMS)]
    parts = list(fran_parts(model.spec.layers, params or model.params, model.state))
    if len(parts) != len(mods):
        raise ValueError(f"{len(parts)} fran layers with params against {len(mods)} modules")
    out = []
    for (layer, p, s), m in zip(parts, mods, strict=True):
        if not isinstance(m, KINDS[type(layer)]):
            raise ValueError(f"{layer!r} paired with {m!r}")
        out.append((layer, in_torch_layout(layer, p), s, m))
    return out


def copy_into(model: fran.Model, net: nn.Module) -> None:
    """fran's params and batchnorm running statistics into the twin."""
    with torch.no_grad():
        for layer, p, s, m in twin_pairs(model, net):
            for key, value in p.items():
                if getattr(m, key).shape != value.shape:
                    raise ValueError(f"{layer!r} {key}: {value.shape} against {m!r}")
                getattr(m, key).copy_(torch.from_numpy(np.array(value)))
            if s:
                m.running_mean.copy_(torch.from_numpy(np.array(s["mean"])))
                m.running_var.copy_(torch.from_numpy(np.array(s["var"])))


class FedDropout(nn.Module):
    """Dropout that applies, in training, the masks fran drew (taken in the order drawn)."""

    def __init__(self, p: float, masks: list):
        super().__init__()
        self.p, self.masks = p, masks

    def forward(self, x):
        if not self.training:
            return x
        mask = torch.from_numpy(self.masks.pop(0))
        if mask.shape != x.shape:
            raise ValueError(f"dropout mask {tuple(mask.shape)} for input {tuple(x.shape)}")
        return x * mask


def dropout_rates(layers) -> list:
    """fran's dropout rates in order, inside residual blocks too."""
    rates = []
    for layer in layers:
        if isinstance(layer, fran.residual):
            rates += dropout_rates(layer.layers + (layer.shortcut or ()))
        elif isinstance(layer, fran.dropout):
            rates.append(layer.rate)
    return rates


def fed_twin(name: str, model: fran.Model, masks: list) -> nn.Module:
    """The PyTorch twin in the model's dtype holding fran's params, its dropouts (of fran's
    rates, else a ValueError) fed the masks fran draws (see recorded_masks)."""
    net = TORCH_NETS[name]().to(torch.from_numpy(np.zeros(0, model.dtype)).dtype)
    drops = [(path, m) for path, m in net.named_modules() if isinstance(m, nn.Dropout)]
    if [m.p for _, m in drops] != dropout_rates(model.spec.layers):
        raise ValueError(f"{name}: the twin's dropout rates differ from fran's")
    for path, m in drops:
        parent, _, child = path.rpartition(".")
        setattr(net.get_submodule(parent), child, FedDropout(m.p, masks))
    copy_into(model, net)
    return net


@contextlib.contextmanager
def recorded_masks():
    """A list that receives every dropout mask fran draws (scaled by 1 / (1 - rate)), in order."""
    module = importlib.import_module("fran.layers.dropout")  # the module, not the layer class
    original, drawn = module._scaled_mask, []

    def recording(spec, x, rng):
        mask = original(spec, x, rng)
        drawn.append(np.array(mask))
        return mask

    module._scaled_mask = recording
    try:
        yield drawn
    finally:
        module._scaled_mask = original


def synthetic_images(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-like float64 images: a zero background around a random 16 x 16 patch."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 1, 28, 28))
    X[:, :, 6:22, 6:22] = rng.random((n, 1, 16, 16)) * (rng.random((n, 1, 16, 16)) < 0.6)
    if name == "pytorch_mnist":
        ex = MODULES[name]
        X = (X - ex.MEAN) / ex.STD
    return X, rng.integers(0, 10, n)


# ---------------------------------------------------------------- the twin's training epoch


def torch_epoch(net, opt, lr, clip, X, y, order, batch: int, step: int) -> tuple[int, list]:
    """One training epoch of the twin over X[order] in batches of `batch` (the last may be
    smaller), the rate set to lr(step) before each step; (the step count after it, the losses)."""
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    losses = []
    for i in range(0, len(X), batch):
        idx = order[i : i + batch]
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr(step)
        opt.zero_grad()
        loss = loss_fn(net(X[idx]), y[idx])
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        step += 1
    return step, losses
