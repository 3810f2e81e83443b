"""Hostile model files are refused before they cost anything.

Each file here is crafted byte by byte (a raw zip of hand-written .npy headers): a header declaring
10**12 elements, a metadata entry far over META_MAX_BYTES that deflates to almost nothing, JSON
nested 100,000 deep, specs with unknown or missing arguments, layers no package provides, negative
and non-integer shapes, duplicate entries, integer and object dtypes. Each must raise
CheckpointError naming the file and the problem; in a fresh process the peak traced allocation of
the refused load must stay below the file's own size, and loading must import no module at all.
A hypothesis fuzz then mutates valid files at the JSON, header and zip levels: load either returns
a model or raises CheckpointError.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fran
import fran.files
from fran.io import META_MAX_BYTES, META_MAX_DEPTH, CheckpointError

ROOT = Path(fran.__file__).resolve().parents[1]


N_IN, HIDDEN = 128, 64  # params/0/w is (128, 64): a file of about 100 KB with Adam's moments


def tiny():
    net = fran.network([fran.dense(HIDDEN, activation="tanh"), fran.dense(3)])
    model = fran.init_weights(net, 1, N_IN)
    X, y = np.zeros((2, N_IN), np.float32), np.zeros((2, 3), np.float32)
    return fran.train_nn(model, X, y, loss="mse", batch_size=2)


def npy(shape, descr="<f4", data=b"", fortran=False, raw_header=None) -> bytes:
    """A .npy (version 1.0) whose header says whatever we like, followed by `data`."""
    if raw_header is None:
        raw_header = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    header = raw_header.encode("latin1")
    pad = (-(10 + len(header) + 1)) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def entries_of(model, metadata=None) -> dict[str, bytes]:
    """A valid file's entries as {name: .npy bytes}, and its JSON, to edit."""
    arrays = fran.io._arrays_and_meta(model, metadata)
    out = {}
    for name, array in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=False)
        out[name] = buf.getvalue()
    return out


def meta_of(entries) -> dict:
    raw = entries["__meta__"]
    return json.loads(raw[raw.index(b"\n") + 1 :])


def with_meta(entries, doc) -> dict[str, bytes]:
    raw = json.dumps(doc).encode()
    return {**entries, "__meta__": npy((len(raw),), "|u1", raw)}


def write_zip(path: Path, entries, method=zipfile.ZIP_STORED) -> Path:
    """Entries as (name, bytes) pairs or a dict; names get ".npy" unless they have a suffix."""
    items = entries.items() if isinstance(entries, dict) else entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", method) as z:
            for name, blob in items:
                z.writestr(name if "." in name else f"{name}.npy", blob)
    return path


def expect(path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as info:
        fran.load(path)
    message = str(info.value)
    assert message.startswith(f"load: {path}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture(scope="module")
def good():
    return entries_of(tiny(), {"note": "ok"})


def test_the_crafted_writer_makes_a_loadable_file(tmp_path, good):
    model = fran.load(write_zip(tmp_path / "m.npz", good))
    assert model.spec == tiny().spec and fran.io.load_metadata(tmp_path / "m.npz") == {"note": "ok"}


# ----------------------------------------------------------------------------- the hostile files


def huge_header(good):
    return {**good, "params/0/w": npy((10**6, 10**6), data=b"\0" * 64)}


def huge_meta_header(good):
    return {**good, "__meta__": npy((10**12,), "|u1", b"{}")}


FLOAT_SHAPE_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 4), }"


def cases(good) -> dict:
    doc = meta_of(good)

    def edited(edit):
        d = json.loads(json.dumps(doc))
        edit(d)
        return with_meta(good, d)

    nested = "[" * 100_000 + "]" * 100_000
    deep = {"x": 1}
    for _ in range(META_MAX_DEPTH + 5):
        deep = {"x": deep}
    bad_spec = fran.io.encode_spec(fran.dense(4, activation="tanh"), "layer 0")
    return {
        "header 10**12 elements": (huge_header(good), ["'params/0/w'", "(1000000, 1000000)"]),
        "meta header 10**12": (huge_meta_header(good), ["'__meta__'", "1000000000000"]),
        "json nested 100k": (
            {**good, "__meta__": npy((len(nested),), "|u1", nested.encode())},
            ["'__meta__'", "nest"],
        ),
        "json nested over cap": (edited(lambda d: d.update(metadata=deep)), ["META_MAX_DEPTH"]),
        "unknown arg": (
            edited(lambda d: d["network"]["layers"][0]["args"].update(evil=1)),
            ["layer 0", "unknown ['evil']"],
        ),
        "missing arg": (
            edited(lambda d: d["network"]["layers"][0]["args"].pop("activation")),
            ["layer 0", "missing ['activation']"],
        ),
        "unknown layer": (
            edited(lambda d: d["network"]["layers"][1].update(layer="os.system")),
            ["layer 1", "'os.system'", "plugin"],
        ),
        "module path layer": (
            edited(lambda d: d["network"]["layers"][1].update(layer="subprocess:Popen")),
            ["'subprocess:Popen'"],
        ),
        "negative header shape": (
            {**good, "params/0/w": npy((-5, 4))},
            ["'params/0/w'", "(-5, 4)", f"expected ({N_IN}, {HIDDEN})"],
        ),
        "float header shape": (
            {**good, "params/0/w": npy(None, raw_header=FLOAT_SHAPE_HEADER)},
            ["'params/0/w'", "header"],
        ),
        "negative input_shape": (
            edited(lambda d: d.update(input_shape=[1, -5])),
            ["input_shape", "positive integers"],
        ),
        "float input_shape": (
            edited(lambda d: d.update(input_shape=[1, 5.0])),
            ["input_shape", "positive integers"],
        ),
        "negative layer arg": (
            edited(lambda d: d["network"]["layers"][0]["args"].update(n_out=-4)),
            ["layer 0", "'dense'"],
        ),
        "float layer arg": (
            edited(lambda d: d["network"]["layers"][0]["args"].update(n_out=4.5)),
            ["layer 0", "'dense'"],
        ),
        "huge layer arg": (
            edited(lambda d: d["network"]["layers"][1]["args"].update(n_out=10**12)),
            ["layer"],
        ),
        "huge but fitting layer arg": (
            edited(lambda d: d["network"]["layers"][1]["args"].update(n_out=10**7)),
            ["imply", "bytes"],
        ),
        "duplicate entry": (
            [*good.items(), ("params/0/w", good["params/0/w"])],
            ["'params/0/w.npy'", "twice"],
        ),
        "not npy entry": ([*good.items(), ("evil.pkl", b"\x80\x04.")], ["'evil.pkl'", ".npy"]),
        "int params dtype": (
            {**good, "params/0/w": npy((N_IN, HIDDEN), "<i4", b"\0" * 4 * N_IN * HIDDEN)},
            ["'params/0/w'", "int32", "float32"],
        ),
        "object params dtype": (
            {**good, "params/0/w": npy((N_IN, HIDDEN), "|O", b"\x80\x04N.")},
            ["'params/0/w'", "object"],
        ),
        "int meta dtype": (edited(lambda d: d.update(dtype="int32")), ["floating point"]),
        "structured dtype": (
            {**good, "params/0/w": npy((N_IN, HIDDEN), [("a", "<f4")], b"\0" * 4 * N_IN * HIDDEN)},
            ["'params/0/w'", "dtype"],
        ),
        "header bigger than data": (
            {**good, "params/0/w": npy((N_IN, HIDDEN), data=b"\0" * 8)},
            ["'params/0/w'", f"{4 * N_IN * HIDDEN:,}", "holds 8 bytes"],
        ),
        "spec 'network' not a layer": (
            edited(lambda d: d["network"]["layers"].insert(0, bad_spec | {"args": []})),
            ["layer 0"],
        ),
    }


CASES = sorted(cases(entries_of(tiny(), {"note": "ok"})))


@pytest.mark.parametrize("name", CASES)
def test_hostile_file_is_refused(tmp_path, good, name):
    entries, fragments = cases(good)[name]
    path = write_zip(tmp_path / "hostile.npz", entries)
    expect(path, *fragments)


# What the reader read before it refused: every entry is read through fran.files.Reader.read (its header
# checked first, then its data). Archive-level defects stop before any entry; a spec, input shape,
# dtype or JSON defect stops after the metadata, before any array (the spec's implied size is
# compared with the file's before a single param is read); a bad array header stops at that array.
ZIP_LEVEL = {"duplicate entry", "not npy entry"}
AT_AN_ARRAY = {
    "float header shape", "header 10**12 elements", "header bigger than data",
    "int params dtype", "negative header shape", "object params dtype", "structured dtype",
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_hostile_file_is_refused_before_reading_past_the_defect(tmp_path, good, name, monkeypatch):
    reads = []
    real = fran.files.Reader.read
    monkeypatch.setattr(
        fran.files.Reader,
        "read",
        lambda self, entry, *a, **k: (reads.append(entry), real(self, entry, *a, **k))[1],
    )
    entries, _ = cases(good)[name]
    with pytest.raises(CheckpointError):
        fran.load(write_zip(tmp_path / "hostile.npz", entries))
    if name in ZIP_LEVEL:
        assert reads == [], reads
    elif name in AT_AN_ARRAY:
        assert reads == ["__meta__", "params/0/w"], reads
    else:
        assert reads == ["__meta__"], reads


def test_metadata_over_the_cap_that_deflates_to_little(tmp_path, good):
    """A __meta__ entry declaring 96 MiB (over META_MAX_BYTES) compressed to about 100 KB."""
    n = META_MAX_BYTES + 32 * 2**20
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in good.items():
            if name != "__meta__":
                z.writestr(f"{name}.npy", blob, compress_type=zipfile.ZIP_STORED)
        with z.open("__meta__.npy", "w", force_zip64=True) as member:
            member.write(npy((n,), "|u1"))
            chunk = b" " * 2**20
            for _ in range(n // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 2**20
    expect(path, "'__meta__'", f"{n + 128:,}"[:3], "META_MAX_BYTES")


def test_compressed_entries_are_refused(tmp_path, good):
    path = write_zip(tmp_path / "z.npz", good, method=zipfile.ZIP_DEFLATED)
    expect(path, "compressed")


def test_save_refuses_what_load_would_refuse(tmp_path):
    deep = {}
    for _ in range(META_MAX_DEPTH):
        deep = {"x": deep}
    with pytest.raises(ValueError, match="META_MAX_DEPTH"):
        fran.save(tmp_path / "m.npz", tiny(), metadata=deep)
    with pytest.raises(ValueError, match="META_MAX_BYTES"):
        fran.save(tmp_path / "m.npz", tiny(), metadata={"x": "a" * META_MAX_BYTES})
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- cost, in a fresh process

PROBE = """
import json, resource, sys, tracemalloc
import fran
from fran.io import CheckpointError

fran.load(sys.argv[1])  # warm up: imports, caches
fran.registry.names()  # and the list of installed plugins (importlib.metadata's own imports)
before = set(sys.modules)
out = {}
for path in sys.argv[2:]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        fran.load(path)
        result = "loaded"
    except CheckpointError as exc:
        result = "refused" if path in str(exc) else "unnamed"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    out[path] = {"result": result, "peak": peak, "maxrss_growth_kib": grew}
out["__imported__"] = sorted(set(sys.modules) - before)
out["__maxrss_kib__"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


# dense(n_out=10**7 or 10**12) is refused from fran.engine's shape-only params (dense's
# param_shapes rule): nothing is allocated, not even address space, so every case is bounded by
# the file's own size.
# A file that is mostly JSON text costs that text twice while it is parsed: the bytes and the str.
JSON_TEXT = {"json nested 100k"}


def test_refusals_cost_less_than_the_file_and_import_nothing(tmp_path, good):
    named = enumerate(sorted(cases(good).items()))
    paths = {name: write_zip(tmp_path / f"{i}.npz", entries) for i, (name, (entries, _)) in named}
    reference = write_zip(tmp_path / "good.npz", good)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(reference)]
        + [str(p) for p in paths.values()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["__imported__"] == [], got["__imported__"]
    report = []
    for name, path in paths.items():
        size = path.stat().st_size
        row = got[str(path)]
        report.append(
            f"{name:28s} file {size:8,d} B  traced peak {row['peak']:10,d} B  "
            f"maxrss growth {row['maxrss_growth_kib']:5d} KiB  {row['result']}"
        )
        assert row["result"] == "refused", (name, row)
        assert row["maxrss_growth_kib"] < 1024, (name, row, size)
        if name in JSON_TEXT:
            assert row["peak"] < 2 * size, (name, row, size)  # its bytes and their decoded text
        else:
            assert row["peak"] < size, (name, row, size)  # less than the file itself
    print("\n".join(report), f"\nprocess maxrss {got['__maxrss_kib__']} KiB (numpy's own)")


# ----------------------------------------------------------------------------- fuzz

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-2, 10**13), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(-2, 5), max_size=3),
)


def _paths(tree, prefix=()):
    """Every path to a value in a JSON tree."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, (*prefix, i))


def _set(tree, path, value):
    if not path:
        return value
    *head, last = path
    node = tree
    for key in head:
        node = node[key]
    if value is _DELETE:
        del node[last]  # a key of a dict or an item of a list
    else:
        node[last] = value
    return tree


_DELETE = object()


@FUZZ
@given(data=st.data())
def test_load_of_mutated_files_raises_only_checkpoint_error(data, tmp_path_factory, good):
    entries = dict(good)
    kind = data.draw(st.sampled_from(["json", "header", "zip"]))
    if kind == "json":
        doc = meta_of(entries)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(list(_paths(doc))))
            value = data.draw(st.one_of(junk, st.just(_DELETE)))
            doc = _set(doc, path, 0 if value is _DELETE and not path else value)
        items = list(with_meta(entries, doc).items())
    elif kind == "header":
        name = data.draw(st.sampled_from(sorted(entries)))
        shape = data.draw(
            st.one_of(
                st.tuples(st.integers(-(2**40), 2**40)),
                st.lists(st.integers(-2, 10**7), max_size=4).map(tuple),
            )
        )
        descr = data.draw(st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|u1", "|b1", "|O", "<c8"]))
        blob = npy(shape, descr, data.draw(st.binary(max_size=200)), data.draw(st.booleans()))
        items = list({**entries, name: blob}.items())
    else:
        items = list(entries.items())
        op = data.draw(st.sampled_from(["drop", "duplicate", "rename", "swap"]))
        i = data.draw(st.integers(0, len(items) - 1))
        if op == "drop":
            del items[i]
        elif op == "duplicate":
            items.append(items[i])
        elif op == "rename":
            items[i] = (data.draw(st.text(min_size=1, max_size=12)), items[i][1])
        else:
            j = data.draw(st.integers(0, len(items) - 1))
            items[i], items[j] = (items[i][0], items[j][1]), (items[j][0], items[i][1])
    path = tmp_path_factory.mktemp("mutant") / "model.npz"
    try:
        write_zip(path, items)
    except (ValueError, UnicodeEncodeError):  # a name zipfile itself cannot store
        return
    try:
        fran.load(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
