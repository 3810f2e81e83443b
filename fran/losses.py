"""Losses, each a pure `fn(y, target) -> (value, dloss/dy)` averaged over the batch.

cross_entropy works on logits, as torch's CrossEntropyLoss: with p = softmax(z),
  L = -mean_n sum_k t[n,k] log p[n,k],   dL/dz = (p * sum_k t - t) / N  (= (p - onehot) / N).
A network that ends in softmax() is trained on the logits before it (the fused, stable gradient
of DLFS's SoftmaxWithLoss): -1/p is never formed, so saturated outputs give no NaN or inf.
mse is the mean over all elements, as torch's MSELoss:  L = mean (y - t)^2,  dL/dy = 2 (y - t) / size.
Targets for cross_entropy are integer labels (N,) or one-hot / soft rows (N, K).
sequence_cross_entropy(ignore_index) is cross-entropy at every position of logits (N, T, V)
against integer targets (N, T), as torch.nn.functional.cross_entropy(logits.reshape(-1, V),
targets.reshape(-1), ignore_index=...): the mean over the M positions whose target is not
ignore_index,  L = -(1/M) sum_valid log p[n,t,target],  dL/dz = valid (p - onehot) / M.
It is declared `per_position=True`, so train_nn and evaluate_nn take its (N, T) targets beside
inputs (N, T) and evaluate_nn reports the accuracy over the counted positions.
A Loss is a mean over `count(target)` terms (None: over the samples, len(target)). train_step
cuts a batch into pieces on parallel threads and weights each piece's value and gradients by
its count over the batch's: for sequence_cross_entropy the count is the positions not ignored,
so a cut batch gives the whole batch's mean loss and gradient, up to rounding, however unevenly
the ignored positions fall. A Loss of your own that is a mean over something else than samples
gives its count likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Loss(NamedTuple):
    name: str
    fn: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    on_logits: bool  # True: a network's final softmax is fused into this loss
    count: Callable[[np.ndarray], int] | None = None  # the terms fn's mean is over; None: len
    per_position: bool = False  # integer targets (N, T) for outputs (N, T, V)
    ignore_index: int | None = None  # a target that counts for nothing (per_position only)


def count(loss: Loss, target: np.ndarray) -> int:
    """How many terms `loss.fn`'s mean over `target` is taken over (the weight of a piece)."""
    return len(target) if loss.count is None else int(loss.count(target))


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


def sequence_cross_entropy(ignore_index: int | None = None) -> Loss:
    """Cross-entropy per position of (N, T, V) logits against (N, T) integer targets, averaged
    over the positions whose target is not `ignore_index` (None: over all)."""
    if ignore_index is not None and (
        not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool)
    ):
        raise TypeError(
            f"sequence_cross_entropy: ignore_index must be an int or None, got {ignore_index!r}"
        )

    def fn(logits, target):
        fn_name = "sequence_cross_entropy"
        if logits.ndim != 3 or np.shape(target) != logits.shape[:2]:
            raise ValueError(
                f"{fn_name}: expects logits (N, T, V) and targets (N, T), got {logits.shape} "
                f"and {np.shape(target)}"
            )
        target = np.asarray(target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"{fn_name}: targets must be integer ids, got dtype {target.dtype}")
        N, T, V = logits.shape
        valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
        M = int(valid.sum())
        if M == 0:
            raise ValueError(f"{fn_name}: every target is ignore_index={ignore_index}")
        ids = np.where(valid, target, 0)
        if ids.min() < 0 or ids.max() >= V:
            raise ValueError(
                f"{fn_name}: targets must lie in [0, {V}) or be ignore_index={ignore_index}, "
                f"got min {target[valid].min()} max {target[valid].max()}"
            )
        logp = log_softmax(logits)
        n, t = np.nonzero(valid)
        value = -logp[n, t, ids[n, t]].sum() / M
        grad = np.exp(logp)  # our own fresh array
        grad[n, t, ids[n, t]] -= 1
        grad *= valid[..., None] / np.asarray(M, logits.dtype)
        return float(value), grad.astype(logits.dtype, copy=False)

    def counted(target):  # the positions the mean is over
        target = np.asarray(target)
        return (
            target.size if ignore_index is None else int(np.count_nonzero(target != ignore_index))
        )

    name = "sequence_cross_entropy" + ("" if ignore_index is None else f"({ignore_index})")
    return Loss(
        name, fn, on_logits=True, count=counted, per_position=True, ignore_index=ignore_index
    )


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
