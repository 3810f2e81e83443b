"""The IDX file format (MNIST's): a reader for raw or gzipped files."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """An IDX file is malformed: bad magic, unknown dtype, or a size that disagrees."""


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextmanager
def open_maybe_gzip(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading, decompressing it if it starts with the gzip magic bytes."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if gzipped:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def _read_content(path: Path) -> bytes:
    try:
        with open_maybe_gzip(path) as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise IDXError(f"{path}: starts like a gzip file but does not decompress: {e}") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array shaped as its header says."""
    path = Path(path)
    data = _read_content(path)
    if len(data) < 4:
        raise IDXError(f"{path}: truncated header: expected at least 4 bytes, found {len(data)}")
    if data[0:2] != b"\x00\x00":
        raise IDXError(f"{path}: wrong magic: expected bytes 00 00, found {data[0:2].hex(' ')}")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise IDXError(f"{path}: unknown dtype code 0x{code:02X}: expected one of {known}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXError(
            f"{path}: truncated header: expected {header_size} bytes for {ndim} dimensions, "
            f"found {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        what = "truncated data" if found < expected else "trailing bytes"
        raise IDXError(
            f"{path}: {what}: header says shape {shape} of {dtype.name} "
            f"({expected} bytes of data), found {found} bytes of data"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
