"""The old name of ``fran.data``, kept so ``python -m fran.datasets fetch ...`` and
``from fran.datasets import load_mnist`` keep working. New code: ``fran.data``."""

from __future__ import annotations

from fran.data import (
    DATASETS,
    ChecksumError,
    Dataset,
    FetchError,
    IDXError,
    RegistrySource,
    cache_dir,
    fetch,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from fran.data.fetch import main as _main

__all__ = [
    "DATASETS",
    "ChecksumError",
    "Dataset",
    "FetchError",
    "IDXError",
    "RegistrySource",
    "cache_dir",
    "fetch",
    "load_fashion_mnist",
    "load_mnist",
    "main",
    "read_idx",
]


def main(argv=None) -> int:
    """``python -m fran.datasets fetch ...``, the same command as ``python -m fran.data``."""
    return _main(argv, prog="python -m fran.datasets")


if __name__ == "__main__":
    raise SystemExit(main())
