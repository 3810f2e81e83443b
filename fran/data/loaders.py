"""MNIST and Fashion-MNIST as arrays: ``load_mnist`` and ``load_fashion_mnist``."""

from __future__ import annotations

import os

import numpy as np

from fran.data import store
from fran.data.catalog import dataset
from fran.data.idx import IDXError, read_idx


def _load(
    name: str,
    split: str,
    n: int | None,
    root: str | os.PathLike[str] | None,
    download: bool,
) -> tuple[np.ndarray, np.ndarray]:
    ds = dataset(name)
    if split not in ds.splits:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(ds.splits)}")
    images_name, labels_name = ds.splits[split]
    unreachable: set[str] = set()
    images_path = store.locate(ds, images_name, root, download, unreachable)
    labels_path = store.locate(ds, labels_name, root, download, unreachable)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IDXError(
            f"{images_path} and {labels_path}: expected images (N, H, W) and labels (N,), "
            f"found {images.shape} and {labels.shape}"
        )
    if images.dtype != np.uint8:
        raise IDXError(f"{images_path}: expected uint8 pixels, found {images.dtype}")
    available = len(labels)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int or None, got {n!r}")
        if not 1 <= n <= available:
            raise ValueError(
                f"n={n} is out of range: {name} {split} has {available} samples, "
                f"so n must be between 1 and {available}"
            )
        images, labels = images[:n], labels[:n]
    X = images[:, None, :, :].astype(np.float32) / np.float32(255.0)
    return X, labels.astype(np.int64)


def load_mnist(
    split: str = "train",
    n: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST as ``(X, y)``: X float32 in [0, 1] shaped (N, 1, 28, 28), y int64 (N,).

    ``split`` is ``"train"`` (60000) or ``"test"`` (10000); ``n`` keeps the first n samples.
    See ``fran.data`` for where the files are looked for.
    """
    return _load("mnist", split, n, root, download)


def load_fashion_mnist(
    split: str = "train",
    n: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as ``(X, y)``, exactly like ``load_mnist``."""
    return _load("fashion-mnist", split, n, root, download)
