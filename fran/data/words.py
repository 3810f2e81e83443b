"""A word list for character-level language models: Debian's ``wamerican`` (SCOWL).

``load_words`` finds ``american-english`` as the image datasets' files are found (``root``,
``$FRAN_DATA``, the cache, ``/usr/share/dict``; ``python -m fran.data fetch words`` copies it
from there or downloads the Debian package), checks its SHA-256, and keeps the words written
only in the letters a-z: no capitals (names), apostrophes (possessives) or accents.
"""

from __future__ import annotations

import os
import re

from fran.data import store
from fran.data.catalog import dataset

FILE = "american-english"
_LOWERCASE_WORD = re.compile(r"[a-z]+")


def read_words(path: str | os.PathLike[str]) -> list[str]:
    """The lowercase a-z words of a UTF-8 word list, one per line, in file order, each once."""
    with open(path, encoding="utf-8") as f:
        lines = (line.strip() for line in f)
        return list(dict.fromkeys(w for w in lines if _LOWERCASE_WORD.fullmatch(w)))


def load_words(
    n: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> list[str]:
    """The lowercase words of wamerican's ``american-english`` (63,875), ``n`` keeps the first n.

    See ``fran.data`` for where the file is looked for; a copy failing its checksum is an error.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"load_words: n must be an integer >= 1 or None, got {n!r}")
    path = store.locate(dataset("words"), FILE, root, download)
    words = read_words(path)
    if n is not None and n > len(words):
        raise ValueError(f"load_words: n={n} is out of range: the list has {len(words)} words")
    return words if n is None else words[:n]
