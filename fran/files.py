"""Files written whole or not at all, and zip archives of .npy arrays read without trusting them.

Writes (`atomic_write`, `write_json`) go to a uniquely named temporary file in the target's
folder, are fsynced and then renamed over the target, so a crash, a full disk or a concurrent
writer leaves either the old file or a new one complete; a write that fails raises SaveError (an
OSError) naming the file and leaves no temporary file (`remove_stale_temps` sweeps those of
writers killed mid-write).

Reading (`open_archive`, `Reader`) takes the zip archive itself (never np.load, never pickle):
it refuses compressed, duplicate or non-.npy entries and entries declaring more bytes than the
file holds, and checks every .npy header against the shape and dtype the caller expects and
against the bytes the entry really holds *before* reading its data. So a read allocates no more
than the entry's own stored bytes, and every defect is a CheckpointError naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import numpy as np

MAX_HEADER_BYTES = 10_000  # a .npy header longer than this is refused unread


class CheckpointError(ValueError):
    """A saved model that cannot be read: truncated, corrupted, hostile, of another format or
    version, or naming a layer no installed plugin provides. The message names the file."""

    __module__ = "fran.io"  # public there (and as fran.CheckpointError): tracebacks name it so


class SaveError(OSError):
    """`save`, `save_checkpoint` or `write_json` could not write the file completely (no space, a
    file-size limit, a read-only folder, ...). `.filename` is the target, `.errno` the cause's; the
    previous file at that path is untouched and no temporary file is left behind."""

    __module__ = "fran.io"  # public there (and as fran.SaveError)


# ----------------------------------------------------------------------------- atomic writes


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_prefix(path: Path) -> str:
    """Temporary files are `.<name>.<pid>.<random>.tmp`: unique per writer, and the pid tells a
    sweeping writer whether the file's writer is still alive (see remove_stale_temps)."""
    return f".{path.name}.{os.getpid()}."


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], caller: str = "save") -> None:
    """Write via a fsynced, uniquely named temp file in the same folder, then os.replace it onto
    `path`. Any OSError (no space, EFBIG, a read-only folder) becomes a SaveError naming `path`,
    after the temp file is removed; the previous file at `path` is untouched."""
    path = Path(path)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise save_error(caller, path, exc, "cannot create a temporary file in its folder") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, SaveError):
            raise save_error(caller, path, exc, "could not be written completely") from exc
        raise
    _fsync_dir(directory)


def save_error(caller: str, path: Path, exc: OSError, what: str) -> SaveError:
    """The SaveError of `caller` failing to write `path` because of `exc` (`what` went wrong)."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    return SaveError(
        exc.errno,
        f"{caller}: {path} {what} ({cause}); the previous file, if any, is intact and no "
        f"temporary file is left",
        str(path),
    )


def write_json(path, obj) -> None:
    """obj as indented JSON in `path`, written atomically (reports, metrics, benchmark results)."""
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(Path(path), lambda fh: fh.write(text.encode()), caller="write_json")


def _writer_alive(temp: Path, prefix: str) -> bool:
    """Whether the writer whose pid is in a temp file's name (see _temp_prefix) still runs."""
    pid = temp.name[len(prefix) :].split(".", 1)[0]
    if not pid.isdigit():
        return False  # not one of ours, or an older fran's: nobody is writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove the temporary files that writers of `path` left when killed mid-write (their pid no
    longer runs); those of live writers are left alone."""
    path = Path(path)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        if not _writer_alive(stale, prefix):
            with contextlib.suppress(OSError):
                stale.unlink()


# ----------------------------------------------------------------------------- reading


class Reader:
    """An open zip archive whose entries are checked (layout, then .npy header) before any data is
    read; reads are bounded by what the checked header and the archive both say. `caps` bounds
    named entries further: {name: (bytes at most, the cap's name for the message)}."""

    def __init__(
        self,
        path: Path,
        archive: zipfile.ZipFile,
        size: int,
        caller: str,
        caps: Mapping[str, tuple[int, str]] | None = None,
    ):
        self.path, self.zip, self.size, self.caller = path, archive, size, caller
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise self.fail(f"entry {name!r} is not a .npy array")
            key = name[: -len(".npy")]
            if key in self.infos:
                raise self.fail(f"entry {name!r} appears twice in the archive")
            cap, cap_name = (caps or {}).get(key, (math.inf, ""))
            if info.file_size > cap:
                raise self.fail(
                    f"the {key!r} entry declares {info.file_size:,} bytes, over the cap of "
                    f"{cap_name}"
                )
            if info.compress_type != zipfile.ZIP_STORED:
                raise self.fail(
                    f"entry {name!r} is compressed (zip method {info.compress_type}); fran files "
                    f"store their entries uncompressed, so none can expand beyond the file"
                )
            if info.file_size != info.compress_size or info.file_size > size:
                raise self.fail(
                    f"entry {name!r} declares {info.file_size:,} bytes ({info.compress_size:,} "
                    f"stored) in a file of {size:,} bytes"
                )
            self.infos[key] = info
        self.files = list(self.infos)

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.caller}: {self.path}: {what}")

    def read(self, name: str, shape: tuple | None, dtype: np.dtype, raw: bool = False):
        """Entry `name`, which must have `dtype` and `shape` (None: any 1-D shape). The header is
        checked against both before a byte of data is read, and the data against the header.
        With raw=True, the data bytes themselves (no array, no copy)."""
        info = self.infos[name]
        with self.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                read_header = np.lib.format.read_array_header_1_0
            elif version == (2, 0):
                read_header = np.lib.format.read_array_header_2_0
            else:
                raise self.fail(f"entry {name!r} has unsupported .npy version {version}")
            try:
                got_shape, fortran, got_dtype = read_header(member, MAX_HEADER_BYTES)
            except ValueError as exc:
                raise self.fail(f"entry {name!r} has an invalid .npy header: {exc}") from None
            if got_dtype != dtype:
                raise self.fail(f"entry {name!r} has dtype {got_dtype}, expected {dtype}")
            if shape is None:
                if len(got_shape) != 1:
                    raise self.fail(f"entry {name!r} has shape {got_shape}, expected 1-D")
            elif tuple(got_shape) != tuple(shape):
                raise self.fail(
                    f"entry {name!r} has shape {tuple(got_shape)}, expected {tuple(shape)}"
                )
            nbytes = math.prod(got_shape) * dtype.itemsize
            held = info.file_size - member.tell()
            if nbytes != held:
                raise self.fail(
                    f"entry {name!r}: its header declares shape {tuple(got_shape)} "
                    f"({nbytes:,} bytes) but the entry holds {held:,} bytes of data"
                )
            data = member.read(nbytes)
            if len(data) != nbytes or member.read(1):  # reading to the end checks the CRC-32
                raise self.fail(f"entry {name!r} is truncated")
        if raw:
            return data
        array = np.frombuffer(data, dtype=dtype).reshape(got_shape, order="F" if fortran else "C")
        return np.ascontiguousarray(array)


@contextlib.contextmanager
def open_archive(path: Path, caller: str, caps: Mapping[str, tuple[int, str]] | None = None):
    """A Reader over the .npz archive `path` (see Reader for `caps`); archive-level defects become
    CheckpointError naming the file (and the public function, `caller`, that was reading it)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(6) == b"\x93NUMPY":
            raise CheckpointError(f"{caller}: {path}: a single .npy array, not a fran .npz archive")
        fh.seek(0)
        try:
            archive = zipfile.ZipFile(fh)
        except Exception as exc:
            raise CheckpointError(
                f"{caller}: {path}: not a readable .npz archive: {why(exc)}"
            ) from exc
        with archive:
            try:
                yield Reader(path, archive, size, caller, caps)
            except CheckpointError:
                raise
            except Exception as exc:
                raise CheckpointError(
                    f"{caller}: {path}: corrupted or truncated: {why(exc)}"
                ) from exc


def why(exc: BaseException) -> str:
    """An exception as 'Type: message', for messages that wrap it."""
    return f"{type(exc).__name__}: {exc}"
