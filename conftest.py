"""Fixtures for the code blocks of README.md, docs/ and examples/*.md (pytest --markdown-docs).

A block asks for one with a `fixture:NAME` info string. Blocks that load MNIST use
`small_mnist`: the real loaders need the dataset (and so the network) which CI does not have,
so the block runs verbatim on a few hundred synthetic images of MNIST's shape instead.
The ONNX section's blocks run in a scratch folder (`onnx_folder`); those that need ONNX Runtime or
PyTorch (`needs_onnxruntime`, `needs_torch`) skip in the torch-free `tests` environment and run in
`oracle`, which runs the blocks of README.md and of the pages under docs/ too.
Blocks that load the word list use `small_words` (300 synthetic words) in the same way.
"""

from __future__ import annotations

import numpy as np
import pytest


def _synthetic_mnist(split: str = "train", n: int | None = None, root=None, download=True):
    """Like fran.data.load_mnist, on at most 256 fixed random images (digit-like blobs)."""
    size = min(n if n is not None else 256, 256)
    rng = np.random.default_rng(0 if split == "train" else 1)
    y = rng.integers(0, 10, size).astype(np.int64)
    X = rng.random((size, 1, 28, 28), dtype=np.float32) * 0.3
    for i, label in enumerate(y):  # a bright bar whose position is the label
        X[i, 0, 2 + 2 * label : 4 + 2 * label, 4:24] = 1.0
    return X, y


@pytest.fixture
def small_mnist(monkeypatch):
    """fran.data.load_mnist (and its old name fran.datasets.load_mnist) on synthetic data."""
    import fran.data
    import fran.datasets

    monkeypatch.setattr(fran.data, "load_mnist", _synthetic_mnist)
    monkeypatch.setattr(fran.datasets, "load_mnist", _synthetic_mnist)
    return _synthetic_mnist


@pytest.fixture
def onnx_folder(tmp_path_factory, monkeypatch):
    """The README's ONNX blocks run in one scratch folder (shared by the blocks, so a file one
    writes another reads), not in the checkout."""
    folder = tmp_path_factory.getbasetemp() / "readme-onnx"
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def needs_onnxruntime():
    """Skips a block where ONNX Runtime is not installed (the torch-free `tests` environment);
    the `oracle` environment has it and runs the block."""
    return pytest.importorskip("onnxruntime")


@pytest.fixture
def needs_torch():
    """Skips a block where PyTorch is not installed; the `oracle` environment runs it."""
    return pytest.importorskip("torch")


def _synthetic_words(n=None, root=None, download=True):
    """Like fran.data.load_words, on 300 fixed pronounceable words (syllables drawn at random)."""
    rng = np.random.default_rng(0)
    onsets, vowels, codas = (
        ["b", "d", "k", "l", "m", "n", "r", "s", "t", "st"],
        "aeiou",
        ["", "n", "s", "r"],
    )
    words = []
    while len(words) < 300:
        word = "".join(
            rng.choice(onsets) + rng.choice(list(vowels)) + rng.choice(codas)
            for _ in range(rng.integers(1, 4))
        )
        if word not in words:
            words.append(word)
    return words if n is None else words[:n]


@pytest.fixture
def small_words(monkeypatch):
    """fran.data.load_words on 300 synthetic words (the real list needs a fetch)."""
    import fran.data

    monkeypatch.setattr(fran.data, "load_words", _synthetic_words)
    return _synthetic_words
