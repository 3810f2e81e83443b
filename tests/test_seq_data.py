"""The word list of the character-level language model: the real loading code on small data.

fran.data.load_words finds, verifies and filters Debian wamerican's american-english; here a toy
catalog entry (the digest of a small file made here) stands in for the real one, as the MNIST
tests do, and the fetch command copies it from a "system folder" the test makes.
"""

from __future__ import annotations

import hashlib

import pytest

from fran import data
from fran.data import catalog, words

LINES = ["A", "Aachen", "aback", "abacus's", "abacus", "élan", "zebra", "", "aback", "x-ray", "ox"]
KEPT = ["aback", "abacus", "zebra", "ox"]


def _toy(monkeypatch, tmp_path, text: str, **fields):
    digest = hashlib.sha256(text.encode()).hexdigest()
    ds = catalog.Dataset(name="words", files={words.FILE: digest}, splits={}, **fields)
    monkeypatch.setitem(catalog.DATASETS, "words", ds)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FRAN_DATA", raising=False)
    return ds


def test_load_words_keeps_lowercase_a_to_z_words_once_in_order(tmp_path, monkeypatch):
    text = "\n".join(LINES) + "\n"
    _toy(monkeypatch, tmp_path, text)
    (tmp_path / words.FILE).write_text(text, encoding="utf-8")
    assert data.load_words(root=tmp_path, download=False) == KEPT
    assert data.load_words(2, root=tmp_path, download=False) == KEPT[:2]
    with pytest.raises(ValueError, match="n=9 is out of range: the list has 4 words"):
        data.load_words(9, root=tmp_path, download=False)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        data.load_words(0, root=tmp_path, download=False)


def test_a_word_list_failing_its_checksum_is_an_error(tmp_path, monkeypatch):
    _toy(monkeypatch, tmp_path, "aback\n")
    (tmp_path / words.FILE).write_text("abaft\n", encoding="utf-8")
    with pytest.raises(data.ChecksumError):
        data.load_words(root=tmp_path, download=False)


def test_missing_word_list_says_how_to_fetch_it(tmp_path, monkeypatch):
    _toy(monkeypatch, tmp_path, "aback\n")
    with pytest.raises(FileNotFoundError, match="python -m fran.data fetch words"):
        data.load_words(root=tmp_path, download=False)


def test_fetch_words_copies_a_verified_system_copy_into_the_cache(tmp_path, monkeypatch):
    text = "\n".join(LINES) + "\n"
    system = tmp_path / "usr-share-dict"
    system.mkdir()
    (system / words.FILE).write_text(text, encoding="utf-8")
    _toy(monkeypatch, tmp_path, text, system_dirs=(str(system),))
    log: list[str] = []
    folders = data.fetch(["words"], dest=tmp_path / "dest", log=log.append)
    assert (folders["words"] / words.FILE).read_text(encoding="utf-8") == text
    assert any("copying" in line for line in log)
    assert words.read_words(folders["words"] / words.FILE) == KEPT


def test_the_real_entry_is_debians_wamerican():
    ds = catalog.DATASETS["words"]
    assert ds.registry == catalog.RegistrySource("apt", "wamerican", "usr/share/dict/{name}")
    assert "/usr/share/dict" in ds.system_dirs
    assert ds.files[words.FILE].startswith("9f513f1c") and len(ds.files[words.FILE]) == 64
