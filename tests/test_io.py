"""fran.io: save/load round trips bit for bit, writes are atomic, and bad files fail cleanly.

Every defect in a file (truncation, flipped bytes, wrong format or version, extra, missing or
misshapen entries, unknown layers, pickled objects) must raise CheckpointError naming the file,
and nothing in a file may ever be unpickled.
"""

from __future__ import annotations

import errno
import importlib.metadata
import io
import json
import os
import sys
import textwrap
import zipfile
from fractions import Fraction

import attrs
import numpy as np
import pytest

import fran
import fran.files
from fran import registry
from fran.io import CheckpointError, load_metadata
from fran.tree import tree_items, tree_leaves

# ----------------------------------------------------------------------------- fixtures


def lenet():
    return fran.network(
        [
            fran.conv2d(k=3, channels=4, activation="relu"),
            fran.maxpooling(2),
            fran.conv2d(k=3, channels=8, padding=1, activation="tanh"),
            fran.maxpooling(2),
            fran.flatten(),
            fran.dense(24, activation="relu"),
            fran.dense(10),
            fran.softmax(),
        ]
    )


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 16, 16), dtype=np.float32), rng.integers(0, 10, n)


def trained(dtype=np.float32, optimizer=None, epochs=2, seed=7):
    optimizer = optimizer or fran.adam(1e-2)
    X, y = data()
    model = fran.init_weights(lenet(), 16, 16, seed=seed, dtype=dtype)
    for _ in range(epochs):
        model = fran.train_nn(model, X, y, optimizer=optimizer, batch_size=32)
    return model


@pytest.fixture(scope="module")
def model():
    return trained()


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.npz"
    fran.save(path, model, metadata={"note": "fixture"})
    return path


def assert_same_tree(a, b):
    items_a, items_b = list(tree_items(a)), list(tree_items(b))
    assert [p for p, _ in items_a] == [p for p, _ in items_b]
    for (path, x), (_, y) in zip(items_a, items_b, strict=True):
        assert type(x) is type(y), path
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, path
            assert np.array_equal(x, y) and x.tobytes() == y.tobytes(), path
        else:
            assert x == y, path


def assert_same_model(a, b):
    assert a.spec == b.spec and (a.epoch, a.step) == (b.epoch, b.step)
    assert a.input_shape == b.input_shape and a.seed == b.seed and a.dtype == b.dtype
    assert type(a.opt_state) is type(b.opt_state)
    assert_same_tree(a.params, b.params)
    assert_same_tree(a.opt_state, b.opt_state)


def rewrite(path, *, meta=None, arrays=None):
    """Rewrite a saved file, its JSON and/or its dict of arrays edited by the given functions."""
    with np.load(path, allow_pickle=False) as f:
        entries = {name: f[name] for name in f.files}
    doc = json.loads(entries.pop("__meta__").tobytes())
    if meta is not None:
        doc = meta(doc) or doc
    if arrays is not None:
        entries = arrays(entries) or entries
    raw = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=raw, **entries)


def expect_error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        fran.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "dtype, optimizer",
    [
        (np.float32, fran.adam(1e-2)),
        (np.float64, fran.adam(1e-2)),
        (np.float32, fran.sgd(0.05, momentum=0.9)),
        (np.float64, fran.sgd(0.05)),
    ],
    ids=["f32-adam", "f64-adam", "f32-sgd-momentum", "f64-sgd"],
)
def test_round_trip_then_training_continues_bitwise(tmp_path, dtype, optimizer):
    before = trained(dtype, optimizer)
    path = tmp_path / "m.npz"
    fran.save(path, before)
    after = fran.load(path)
    assert_same_model(before, after)
    assert after.dtype == np.dtype(dtype) and after.epoch == 2 and after.step == 6
    arrays = [a for a in tree_leaves((after.params, after.opt_state)) if isinstance(a, np.ndarray)]
    assert arrays and not any(a.flags.writeable for a in arrays)
    if optimizer.name.startswith("adam"):
        assert after.opt_state.inner[1].count == before.opt_state.inner[1].count == 6
    X, y = data()
    assert np.array_equal(fran.predict(before, X), fran.predict(after, X))
    # One more epoch from the loaded model equals one more epoch from the original, bit for bit:
    # the shuffle of epoch e comes from default_rng([seed, e]), so no RNG state need be saved.
    go_on = dict(optimizer=optimizer, batch_size=32)
    assert_same_model(fran.train_nn(before, X, y, **go_on), fran.train_nn(after, X, y, **go_on))


def test_untrained_model_has_no_optimizer_state(tmp_path):
    model = fran.init_weights(lenet(), 16, 16, seed=1)
    fran.save(tmp_path / "m.npz", model)
    loaded = fran.load(tmp_path / "m.npz")
    assert loaded.opt_state is None
    assert_same_model(model, loaded)


def test_nested_network_spec_round_trips(tmp_path):
    inner = fran.network([fran.dense(4, activation="tanh"), fran.dense(4)])
    model = fran.init_weights(fran.network([inner, fran.dense(3)]), 1, 5, seed=2)
    fran.save(tmp_path / "m.npz", model)
    loaded = fran.load(tmp_path / "m.npz")
    assert loaded.spec == model.spec and loaded.spec.layers[0] == inner
    assert_same_tree(model.params, loaded.params)


def test_path_is_used_exactly_as_given(tmp_path, model):
    for name in ("model", "model.bin", "model.npz"):
        fran.save(tmp_path / name, model)
        assert_same_model(model, fran.load(str(tmp_path / name)))
    assert sorted(os.listdir(tmp_path)) == ["model", "model.bin", "model.npz"]


def test_file_is_one_plain_npz(saved, model):
    with np.load(saved, allow_pickle=False) as f:
        meta = json.loads(f["__meta__"].tobytes())
        assert np.array_equal(f["params/0/w"], model.params[0]["w"])
        assert np.array_equal(f["opt/inner/1/mu/5/b"], model.opt_state.inner[1].mu[5]["b"])
        assert f["__meta__"].dtype == np.uint8
    assert meta["format"] == "fran.model" and meta["version"] == 2
    assert meta["fran_version"] == fran.__version__
    assert meta["network"]["layers"][0] == {
        "layer": "conv2d",
        "args": {
            "k": 3,
            "channels": 4,
            "stride": 1,
            "padding": 0,
            "activation": "relu",
            "weight_init": None,
        },
    }
    assert (meta["network"]["epoch"], meta["network"]["step"]) == (2, 6)
    adam = meta["opt_state"]["fields"]["inner"]["tuple"][1]
    assert meta["opt_state"]["namedtuple"] == "fran.optim.ChainState"
    assert adam["namedtuple"] == "fran.optim.ScaleByAdamState" and adam["fields"]["count"] == 6
    assert meta["input_shape"] == [1, 16, 16] and meta["seed"] == 7 and meta["dtype"] == "float32"
    assert zipfile.ZipFile(saved).testzip() is None


def test_new_file_is_not_private(tmp_path, model):
    fran.save(tmp_path / "m.npz", model)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- metadata


def test_metadata_round_trip(tmp_path, model):
    meta = {
        "run": "a",
        "lr": 1e-2,
        "history": [{"epoch": 1, "loss": 2.25}],
        "none": None,
        "np": np.float32(0.5),
        "ok": True,
    }
    fran.save(tmp_path / "m.npz", model, metadata=meta)
    got = load_metadata(tmp_path / "m.npz")
    assert got == {**meta, "np": 0.5} and type(got["np"]) is float
    assert load_metadata(tmp_path / "m.npz") == fran.io.load_metadata(str(tmp_path / "m.npz"))
    fran.save(tmp_path / "n.npz", model)
    assert load_metadata(tmp_path / "n.npz") == {}


@pytest.mark.parametrize(
    "bad",
    [{"x": object()}, {"a": np.zeros(3)}, {1: "int key"}, {"a": {(1, 2): 3}}, ["not", "a dict"]],
)
def test_metadata_must_be_json(tmp_path, model, bad):
    with pytest.raises(TypeError, match="metadata"):
        fran.save(tmp_path / "m.npz", model, metadata=bad)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- atomic writes


def test_failed_replace_keeps_old_file_and_leaves_no_temp(tmp_path, model, monkeypatch):
    path = tmp_path / "m.npz"
    old = fran.init_weights(lenet(), 16, 16, seed=99)
    fran.save(path, old)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fran.files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        fran.save(path, model)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    monkeypatch.undo()
    assert_same_model(old, fran.load(path))


@pytest.mark.parametrize("exc", [OSError("no space left"), KeyboardInterrupt()])
def test_writer_dying_midway_keeps_old_file_and_leaves_no_temp(tmp_path, model, monkeypatch, exc):
    path = tmp_path / "m.npz"
    fran.save(path, model)
    before = path.read_bytes()
    real_savez = np.savez

    def half_then_die(fh, *args, **kwargs):
        buffer = io.BytesIO()
        real_savez(buffer, *args, **kwargs)
        fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise exc

    monkeypatch.setattr(np, "savez", half_then_die)
    with pytest.raises(type(exc)):
        fran.save(path, trained(epochs=1))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


def test_unsaveable_spec_field_names_layer_and_field(tmp_path, plugin):
    net = fran.network([fran.flatten(), plugin.cls(factors=(1.0, 2.0), gain=Fraction(1, 3))])
    model = fran.init_weights(net, 2, 2, seed=0)
    with pytest.raises(TypeError, match=r"layer 1 \(io_test_scale\) field 'gain'"):
        fran.save(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists() and not list(tmp_path.glob("*.tmp"))


# ----------------------------------------------------------------------------- damaged files


def test_truncated_files_raise(saved, tmp_path):
    blob = saved.read_bytes()
    rng = np.random.default_rng(0)
    cuts = {0, 1, 4, 30, 100, len(blob) // 2, len(blob) - 22, len(blob) - 1}
    cuts |= set(rng.integers(1, len(blob), 12).tolist())
    bad = tmp_path / "cut.npz"
    for cut in sorted(cuts):
        bad.write_bytes(blob[:cut])
        expect_error(bad)


def test_flipped_bytes_raise_or_change_nothing(saved, tmp_path, model):
    """A flipped byte either raises CheckpointError or hits a byte nothing reads (a local
    header's timestamp, say); it never yields a different model. Flips in array data and in the
    JSON must raise (the zip CRC-32 covers them)."""
    blob = saved.read_bytes()
    payload = model.params[5]["w"].tobytes()
    start = blob.index(payload)
    meta_start = blob.index(b'{"format"')
    rng = np.random.default_rng(1)
    must_raise = [start, start + len(payload) // 2, start + len(payload) - 1, meta_start + 3]
    offsets = must_raise + rng.integers(0, len(blob), 60).tolist()
    bad = tmp_path / "flip.npz"
    for offset in offsets:
        flipped = bytearray(blob)
        flipped[offset] ^= 0x5A
        bad.write_bytes(bytes(flipped))
        try:
            loaded = fran.load(bad)
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            continue
        assert offset not in must_raise, offset
        assert_same_model(model, loaded)


@pytest.mark.parametrize(
    "content", [b"", b"not a zip at all", b"\x93NUMPY garbage", b"PK\x03\x04" + b"\0" * 40]
)
def test_not_an_archive(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    expect_error(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    expect_error(path, "not a fran .npz")


def test_plain_npz_without_meta(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3))
    expect_error(path, "__meta__")


def test_wrong_format_name(saved):
    rewrite(saved, meta=lambda m: {**m, "format": "keras.model"})
    expect_error(saved, "'keras.model'", "'fran.model'")


def test_future_version(saved):
    rewrite(saved, meta=lambda m: {**m, "version": 7})
    expect_error(saved, "version 7", "up to 2")


@pytest.mark.parametrize("version", ["1", 0, None, True])
def test_invalid_version(saved, version):
    rewrite(saved, meta=lambda m: {**m, "version": version})
    expect_error(saved, "version")


def test_meta_not_json(saved):
    with np.load(saved) as f:
        entries = {name: f[name] for name in f.files}
    entries["__meta__"] = np.frombuffer(b"{not json", dtype=np.uint8)
    with open(saved, "wb") as fh:
        np.savez(fh, **entries)
    expect_error(saved, "JSON")


def test_extra_array(saved):
    rewrite(saved, arrays=lambda a: {**a, "params/9/w": np.zeros(2, np.float32)})
    expect_error(saved, "unexpected entries ['params/9/w']")


@pytest.mark.parametrize("name", ["params/6/b", "opt/inner/1/nu/0/w"])
def test_missing_array(saved, name):
    rewrite(saved, arrays=lambda a: {k: v for k, v in a.items() if k != name})
    expect_error(saved, repr(name))


def test_wrong_shape(saved):
    rewrite(saved, arrays=lambda a: {**a, "params/5/w": a["params/5/w"][:-1]})
    expect_error(saved, "'params/5/w'", "shape")


def test_wrong_dtype(saved):
    b = "opt/inner/1/mu/0/b"
    rewrite(saved, arrays=lambda a: {**a, b: a[b].astype(np.float64)})
    expect_error(saved, repr(b), "float64")


def test_unknown_layer_name(saved):
    def rename(meta):
        meta["network"]["layers"][3]["layer"] = "no_such_layer"

    rewrite(saved, meta=rename)
    expect_error(saved, "layer 3", "'no_such_layer'", "plugin")


def test_invalid_layer_args(saved):
    def corrupt(meta):
        meta["network"]["layers"][5]["args"]["n_out"] = -3

    rewrite(saved, meta=corrupt)
    expect_error(saved, "layer 5", "'dense'")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m.pop("input_shape"), "input_shape"),
        (lambda m: m.update(input_shape=[1, 5, 5]), "input shape"),
        (lambda m: m.update(seed="7"), "seed"),
        (lambda m: m.update(dtype="object"), "dtype"),
        (lambda m: m.update(dtype="float16"), "float16"),
        (lambda m: m["network"].update(step=-1), "step"),
        (lambda m: m.update(opt_state={"type": "Pickle", "fields": {}}), "Pickle"),
        (
            lambda m: m["opt_state"]["fields"]["inner"]["tuple"][1]["fields"].update(count="6"),
            "opt/inner/1/count",
        ),
        (lambda m: m.update(metadata=[1]), "metadata"),
    ],
)
def test_invalid_meta_fields(saved, edit, fragment):
    def apply(meta):
        edit(meta)

    rewrite(saved, meta=apply)
    expect_error(saved, fragment)


# ----------------------------------------------------------------------------- no unpickling

UNPICKLED = []


class Boom:
    """Unpickling this records itself: the tests assert that it never happens."""

    def __reduce__(self):
        return (UNPICKLED.append, ("unpickled!",))


@pytest.mark.parametrize("entry", ["params/0/w", "__meta__"])
def test_object_arrays_are_refused_not_unpickled(saved, entry):
    with np.load(saved) as f:
        entries = {name: f[name] for name in f.files}
    evil = np.empty(1, dtype=object)
    evil[0] = Boom()
    entries[entry] = evil
    with open(saved, "wb") as fh:
        np.savez(fh, allow_pickle=True, **entries)
    expect_error(saved)
    if entry == "__meta__":
        with pytest.raises(CheckpointError):
            load_metadata(saved)
    else:  # load_metadata reads only the JSON
        assert load_metadata(saved) == {"note": "fixture"}
    assert UNPICKLED == []


def test_loading_never_uses_np_load_or_pickle(saved, monkeypatch):
    """Loading parses the zip and the .npy headers itself: np.load and pickle are never called."""
    import pickle

    calls = []

    def spy(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")

        return called

    fran.save_checkpoint(saved.parent / "ck", fran.load(saved))
    monkeypatch.setattr(np, "load", spy("np.load"))
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, spy(f"pickle.{name}"))
    fran.load(saved)
    load_metadata(saved)
    fran.load_checkpoint(saved.parent / "ck")
    assert calls == []


# ----------------------------------------------------------------------------- plugins

PLUGIN = '''
"""A test plugin layer: y = x * g with a tuple and a float hyperparameter."""
import attrs
import numpy as np
from fran import registry


@attrs.frozen
class scale:
    factors: tuple = attrs.field(converter=tuple)
    gain: object = 1.0


def output_shape(spec, shape):
    return shape


def init(spec, shape, rng):
    return {"g": np.full(shape, spec.gain * sum(spec.factors))}


def apply(spec, params, x):
    return x * params["g"]


def vjp(spec, params, x):
    return x * params["g"], lambda dy: ({"g": (dy * x).sum(0)}, dy * params["g"])


registry.register("io_test_scale", scale, output_shape=output_shape, init=init, apply=apply,
                  vjp=vjp)
'''


@attrs.frozen
class Plugin:
    cls: type
    install: object
    uninstall: object


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A layer plugin `io_test_scale` behind a real EntryPoint; the registry is restored after."""
    (tmp_path / "fran_io_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))
    ep = importlib.metadata.EntryPoint("io_test_scale", "fran_io_test_plugin:scale", registry.GROUP)

    def install(installed=True):
        """Forget the plugin (as in a fresh process); it stays installed or not."""
        registry._BY_NAME.pop("io_test_scale", None)
        for cls in [c for c, r in registry._BY_TYPE.items() if r.name == "io_test_scale"]:
            del registry._BY_TYPE[cls]
        sys.modules.pop("fran_io_test_plugin", None)
        monkeypatch.setattr(registry, "_entry_points", lambda: (ep,) if installed else ())
        registry._plugins.cache_clear()

    install()
    yield Plugin(registry.get("io_test_scale"), install, lambda: install(False))
    sys.modules.pop("fran_io_test_plugin", None)
    registry._plugins.cache_clear()


def test_plugin_layer_round_trips(tmp_path, plugin):
    layer = plugin.cls(factors=[0.5, 0.25], gain=2.0)
    net = fran.network([fran.flatten(), layer, fran.dense(3)])
    model = fran.init_weights(net, 2, 3, seed=0)
    model = fran.train_nn(model, np.ones((4, 2, 3)), np.zeros((4, 3)), batch_size=2)
    fran.save(tmp_path / "m.npz", model)
    plugin.install()  # a fresh process: registry.get must load the plugin again
    loaded = fran.load(tmp_path / "m.npz")
    got = loaded.spec.layers[1]
    assert type(got).__name__ == "scale" and type(got) is not type(layer)
    assert got.factors == (0.5, 0.25) and isinstance(got.factors, tuple) and got.gain == 2.0
    assert_same_tree(model.params, loaded.params)
    assert_same_tree(model.opt_state, loaded.opt_state)


INPLACE_PLUGIN = PLUGIN.replace("io_test_scale", "io_test_inplace").replace(
    """    return {"g": np.full(shape, spec.gain * sum(spec.factors))}""",
    """    g = rng.normal(0.0, 1.0, shape)
    g *= 0.0  # writes into its draw: load's shape-only stand-in Generator cannot serve this
    g += spec.gain
    return {"g": g}""",
)


def test_plugin_whose_init_writes_into_its_draws_still_loads(tmp_path, monkeypatch):
    (tmp_path / "fran_io_inplace_plugin.py").write_text(textwrap.dedent(INPLACE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))
    module = importlib.import_module("fran_io_inplace_plugin")
    try:
        net = fran.network([fran.flatten(), module.scale(factors=(1.0,), gain=3.0), fran.dense(2)])
        model = fran.init_weights(net, 2, 3, seed=0)
        fran.save(tmp_path / "m.npz", model)
        assert_same_model(model, fran.load(tmp_path / "m.npz"))
    finally:
        sys.modules.pop("fran_io_inplace_plugin", None)


def test_missing_plugin_names_the_layer(tmp_path, plugin):
    net = fran.network([fran.flatten(), plugin.cls(factors=(1.0,))])
    fran.save(tmp_path / "m.npz", fran.init_weights(net, 2, 2))
    plugin.uninstall()
    expect_error(tmp_path / "m.npz", "'io_test_scale'", "layer 1")


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path, model):
    directory = tmp_path / "runs" / "a"
    with pytest.raises(FileNotFoundError):  # no folder: a typo, not "no checkpoint yet"
        fran.load_checkpoint(directory)
    path = fran.save_checkpoint(directory, model, metadata={"epoch_loss": [2.3, 2.1]})
    assert path == directory / "checkpoint.npz" and path.exists()
    loaded, meta = fran.load_checkpoint(directory)
    assert_same_model(model, loaded)
    assert meta == {"epoch_loss": [2.3, 2.1]}
    assert os.listdir(directory) == ["checkpoint.npz"]


def test_empty_checkpoint_directory(tmp_path):
    assert fran.load_checkpoint(tmp_path) is None


def test_checkpoint_removes_stale_temp_files(tmp_path, model):
    stale = tmp_path / ".checkpoint.npz.abc123.tmp"
    stale.write_bytes(b"half a checkpoint from a killed writer")
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    fran.save_checkpoint(tmp_path, model)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "notes.txt"]


def test_bad_checkpoint_raises(tmp_path, model):
    path = fran.save_checkpoint(tmp_path, model)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        fran.load_checkpoint(tmp_path)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(fran.CheckpointError, ValueError)
    assert fran.CheckpointError is CheckpointError


def test_load_checkpoint_accepts_the_file_itself(tmp_path, model):
    path = fran.save_checkpoint(tmp_path / "run", model, metadata={"a": 1})
    loaded, meta = fran.load_checkpoint(path)
    assert_same_model(model, loaded) and meta == {"a": 1}
    loaded, meta = fran.load_checkpoint(str(path))
    assert meta == {"a": 1}


def test_load_checkpoint_of_a_missing_file_names_the_argument(tmp_path):
    missing = tmp_path / "run" / "checkpoint.npz"
    with pytest.raises(
        FileNotFoundError, match=r"load_checkpoint: directory argument .*checkpoint"
    ):
        fran.load_checkpoint(missing)
    (tmp_path / "run").mkdir()
    assert fran.load_checkpoint(tmp_path / "run") is None  # a folder with no checkpoint yet


def test_load_checkpoint_of_a_missing_folder_raises(tmp_path):
    # a typo in the folder's name must not read as "no checkpoint yet" (which starts over)
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: directory argument") as info:
        fran.load_checkpoint(tmp_path / "typo_folder")
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "typo_folder")
    assert fran.load_checkpoint(tmp_path) is None  # an existing, empty folder: no checkpoint yet


def test_save_error_is_an_os_error():
    assert issubclass(fran.io.SaveError, OSError)
