"""Losses, each a pure `fn(y, target) -> (value, dloss/dy)` averaged over the batch.

cross_entropy works on logits, as torch's CrossEntropyLoss: with p = softmax(z),
  L = -mean_n sum_k t[n,k] log p[n,k],   dL/dz = (p * sum_k t - t) / N  (= (p - onehot) / N).
A network that ends in softmax() is trained on the logits before it (the fused, stable gradient
of DLFS's SoftmaxWithLoss): -1/p is never formed, so saturated outputs give no NaN or inf.
mse is the mean over all elements, as torch's MSELoss:  L = mean (y - t)^2,  dL/dy = 2 (y - t) / size.
Targets for cross_entropy are integer labels (N,) or one-hot / soft rows (N, K).
A Loss of your own must likewise be a mean over the batch's samples: train_step cuts a batch into
pieces on parallel threads and weights the pieces' values and gradients by their sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Loss(NamedTuple):
    name: str
    fn: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    on_logits: bool  # True: a network's final softmax is fused into this loss


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _cross_entropy(logits, target):
    N = logits.shape[0]
    logp = log_softmax(logits)
    p = np.exp(logp)
    if target.ndim == 1:
        rows = np.arange(N)
        value = -logp[rows, target].sum() / N
        grad = p
        grad[rows, target] -= 1  # p is our own fresh array
    else:
        target = target.astype(logits.dtype, copy=False)
        value = -(target * logp).sum() / N
        grad = p * target.sum(axis=1, keepdims=True) - target
    grad /= N
    return float(value), grad


def _mse(y, target):
    diff = y - target.astype(y.dtype, copy=False)
    return float(np.mean(diff * diff)), diff * (2.0 / diff.size)


cross_entropy = Loss("cross_entropy", _cross_entropy, on_logits=True)
mse = Loss("mse", _mse, on_logits=False)
LOSSES = {"cross_entropy": cross_entropy, "mse": mse}


def get_loss(loss) -> Loss:
    """A Loss from a Loss or its name; an unknown name lists the known ones."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)} (or a fran.losses.Loss)")
