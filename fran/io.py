"""Saving and loading models: one `.npz` file, written atomically, read without unpickling.

Layout (format "fran.model", version 1), all entries plain `.npy` arrays in one zip archive:

    __meta__            uint8 array holding UTF-8 JSON: format, version, fran_version, the network
                        ({"layer": name, "args": {...}} per layer, epoch, step), input_shape, seed,
                        dtype, opt_state ({"type": "AdamState", "fields": {"count": 120}} or null)
                        and the user's metadata
    params/<i>/<key>    the params of layer i, e.g. params/0/w (paths as fran.tree.tree_items)
    state/<i>/<key>     the layers' state (running statistics), e.g. state/1/mean (none before v2)
    opt/<field>/<i>/<key>  each params-shaped field of the optimizer state, e.g. opt/mu/0/w

Writes go to a temporary file in the target's folder, are fsynced and then renamed over the
target, so a crash at any instant leaves either the old file or the new one. Loading checks every
entry against the spec (names, shapes, dtypes) and rebuilds the specs through the registry; nothing
in the file is executed or unpickled, and every defect is a CheckpointError naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

import fran
from fran import engine, registry
from fran.model import Model
from fran.optim import STATES
from fran.tree import freeze, tree_items, tree_map

FORMAT = "fran.model"
VERSION = 1
META = "__meta__"
CHECKPOINT_NAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A saved model that cannot be read: truncated, corrupted, of another format or version."""


# ----------------------------------------------------------------------------- specs <-> JSON


def _encode_value(value, where: str):
    """A spec field value as JSON: numbers, strings, None, nested specs and tuples of these."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if attrs.has(type(value)):
        return _encode_spec(value, where)
    raise TypeError(
        f"save: {where} is {value!r} of type {type(value).__name__}; only ints, floats, strs, "
        f"bools, None, layer specs and tuples of these can be saved"
    )


def _encode_spec(spec, where: str) -> dict:
    try:
        name = registry.rules_for(spec).name
    except registry.RegistryError as exc:
        raise TypeError(f"save: {where}: {exc}") from None
    if not attrs.has(type(spec)):
        raise TypeError(f"save: {where} ({name}) is not an attrs class, so it cannot be saved")
    fields = (a for a in attrs.fields(type(spec)) if a.init)
    args = {
        a.alias: _encode_value(getattr(spec, a.name), f"{where} ({name}) field {a.alias!r}")
        for a in fields
    }
    return {"layer": name, "args": args}


def _decode_value(value, where: str):
    if isinstance(value, list):
        return tuple(_decode_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return _decode_spec(value, where)
    return value


def _decode_spec(entry, where: str):
    if not (isinstance(entry, dict) and set(entry) == {"layer", "args"}) or not isinstance(
        entry["args"], dict
    ):
        raise CheckpointError(f"{where} is not a {{'layer': ..., 'args': {{...}}}}: {entry!r}")
    name = entry["layer"]
    try:
        cls = registry.get(name)
    except registry.RegistryError as exc:
        raise CheckpointError(
            f"{where} is a layer {name!r} that cannot be loaded (is the plugin providing it "
            f"installed?): {exc}"
        ) from None
    args = {k: _decode_value(v, f"{where} ({name}) field {k!r}") for k, v in entry["args"].items()}
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild {name!r} from {args}: {exc}") from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"save: metadata must be a dict, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save: metadata must be JSON-serialisable: {exc}") from None
    bad = [k for k in _all_keys(metadata) if not isinstance(k, str)]
    if bad:
        raise TypeError(f"save: metadata keys must be strings, got {bad[0]!r}")
    return json.loads(text)


def _all_keys(tree):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield k
            yield from _all_keys(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _all_keys(v)


# ----------------------------------------------------------------------------- model -> arrays


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_state(value) -> bool:
    return isinstance(value, tuple) and STATES.get(type(value).__name__) is type(value)


def _encode_opt(state, prefix: str, put) -> dict:
    """An optimizer state NamedTuple as JSON: {"type", "fields": scalars} plus, for a chain,
    {"inner": {field: [encoded states]}}; its params-shaped trees go to put(prefix/field, tree)."""
    if not _is_state(state):
        raise TypeError(
            f"save: optimizer state {type(state).__name__} is not one of fran.optim.STATES "
            f"({', '.join(STATES)})"
        )
    scalars, inner = {}, {}
    for field in state._fields:
        value = getattr(state, field)
        if _is_scalar(value):
            scalars[field] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, tuple) and value and all(_is_state(v) for v in value):
            inner[field] = [
                _encode_opt(v, f"{prefix}/{field}/{i}", put) for i, v in enumerate(value)
            ]
        else:
            put(f"{prefix}/{field}", value)
    out = {"type": type(state).__name__, "fields": scalars}
    if inner:
        out["inner"] = inner
    return out


def _arrays_and_meta(model: Model, metadata) -> dict[str, np.ndarray]:
    if not isinstance(model, Model):
        raise TypeError(f"save: model must be a fran Model, got {type(model).__name__}")
    dtype = model.dtype
    arrays = {}

    def put(prefix: str, tree) -> None:
        for path, leaf in tree_items(tree):
            if not isinstance(leaf, np.ndarray) or leaf.dtype != dtype:
                raise ValueError(
                    f"save: {prefix}/{path} must be a {dtype} array like the model's params, got "
                    f"{getattr(leaf, 'dtype', type(leaf).__name__)}"
                )
            arrays[f"{prefix}/{path}"] = leaf

    put("params", model.params)
    put("state", model.state)
    opt = None
    if model.opt_state is not None:
        opt = _encode_opt(model.opt_state, "opt", put)
    layers = [_encode_spec(layer, f"layer {i}") for i, layer in enumerate(model.spec.layers)]
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "fran_version": fran.__version__,
        "network": {"layers": layers, "epoch": model.epoch, "step": model.step},
        "input_shape": [int(n) for n in model.input_shape],
        "seed": int(model.seed),
        "dtype": dtype.str if dtype.byteorder not in "=|" else dtype.name,
        "opt_state": opt,
        "metadata": _check_metadata(metadata),
    }
    text = json.dumps(meta, default=_json_default)
    return {META: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **arrays}


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


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a fsynced temp file in the same folder, then os.replace it onto `path`."""
    directory = path.parent
    tmp = tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_dir(directory)


def write_json(path, obj) -> None:
    """obj as indented JSON in `path`, written atomically (reports, metrics, benchmark results)."""
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(Path(path), lambda fh: fh.write(text.encode()))


def save(path, model: Model, *, metadata: dict | None = None) -> None:
    """Save a model (spec, params, optimizer state, counters, seed) to one .npz file, atomically.

    Args:
        path: the file to write, exactly as given (no ".npz" is appended).
        model: a fran Model.
        metadata: an optional JSON-serialisable dict stored with the model (see load_metadata).
    Raises:
        TypeError: a spec field or the metadata cannot be stored as JSON.
    """
    arrays = _arrays_and_meta(model, metadata)
    atomic_write(Path(path), lambda fh: np.savez(fh, allow_pickle=False, **arrays))


# ----------------------------------------------------------------------------- reading


class _Reader:
    """An open archive whose entries are checked (header first) before they are read."""

    def __init__(self, path: Path, npz, size: int):
        self.path, self.npz, self.size = path, npz, size

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {what}")

    def header(self, name: str) -> tuple[tuple, np.dtype]:
        with self.npz.zip.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise self.fail(f"entry {name!r} has unsupported .npy version {version}")
        return shape, dtype

    def read(self, name: str, shape: tuple | None, dtype: np.dtype) -> np.ndarray:
        """Entry `name`, which must have `dtype` and `shape` (None: any 1-D shape that fits)."""
        got_shape, got_dtype = self.header(name)
        if got_dtype != dtype:
            raise self.fail(f"entry {name!r} has dtype {got_dtype}, expected {dtype}")
        if shape is None:
            if len(got_shape) != 1 or got_shape[0] * dtype.itemsize > self.size:
                raise self.fail(f"entry {name!r} has an impossible shape {got_shape}")
        elif tuple(got_shape) != tuple(shape):
            raise self.fail(f"entry {name!r} has shape {tuple(got_shape)}, expected {tuple(shape)}")
        array = self.npz[name]
        if array.dtype != dtype or array.shape != tuple(got_shape):
            raise self.fail(f"entry {name!r} does not match its own header")
        return np.ascontiguousarray(array)


@contextlib.contextmanager
def _open(path: Path):
    """A _Reader over `path`; archive-level defects become CheckpointError naming the file."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            npz = np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable .npz archive: {_why(exc)}") from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: a single .npy array, not a fran .npz archive")
        with npz:
            try:
                yield _Reader(path, npz, size)
            except CheckpointError:
                raise
            except Exception as exc:
                raise CheckpointError(f"{path}: corrupted or truncated: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_meta(reader: _Reader) -> dict:
    if META not in reader.npz.files:
        raise reader.fail(f"no {META!r} entry; not a file written by fran.save")
    raw = reader.read(META, None, np.dtype(np.uint8))
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise reader.fail(f"the {META!r} entry is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise reader.fail(f"the {META!r} entry is not a JSON object")
    if meta.get("format") != FORMAT:
        raise reader.fail(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise reader.fail(f"invalid format version {version!r}")
    if version > VERSION:
        raise reader.fail(
            f"written in {FORMAT} format version {version} (by fran "
            f"{meta.get('fran_version', '?')}); this fran ({fran.__version__}) reads versions "
            f"up to {VERSION}"
        )
    return meta


def _field(reader: _Reader, meta: dict, key: str, check: Callable[[Any], bool], what: str):
    value = meta.get(key)
    if not check(value):
        raise reader.fail(f"metadata field {key!r} must be {what}, got {value!r}")
    return value


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_spec(reader: _Reader, meta: dict) -> engine.network:
    net = _field(reader, meta, "network", lambda v: isinstance(v, dict), "an object")
    layers = net.get("layers")
    if not isinstance(layers, list) or not layers:
        raise reader.fail(f"network layers must be a non-empty list, got {layers!r}")
    for key in ("epoch", "step"):
        if not _is_count(net.get(key)):
            raise reader.fail(f"network {key} must be an integer >= 0, got {net.get(key)!r}")
    try:
        specs = [_decode_spec(entry, f"layer {i}") for i, entry in enumerate(layers)]
        return engine.network(specs, net["epoch"], net["step"])
    except CheckpointError as exc:
        raise reader.fail(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise reader.fail(f"invalid network: {exc}") from None


def _expected_params(reader: _Reader, spec: engine.network, input_shape: tuple) -> tuple:
    """The params tree the spec implies, with throwaway leaves giving each entry's shape."""
    try:
        shapes = engine._shapes(spec, input_shape)
    except ValueError as exc:
        raise reader.fail(f"the network does not fit its input shape: {exc}") from None
    rng = np.random.default_rng(0)
    return tuple(
        registry.rules_for(layer).init(layer, shape, rng)
        for layer, shape in zip(spec.layers, shapes[:-1], strict=True)
    )


def _expected_state(reader: _Reader, spec: engine.network, input_shape: tuple) -> tuple:
    """The layers' state tree the spec implies (running statistics; files before v2 have none)."""
    try:
        return engine._net_init_state(spec, input_shape)
    except ValueError as exc:
        raise reader.fail(f"the network does not fit its input shape: {exc}") from None


def _read_tree(reader: _Reader, prefix: str, like, dtype: np.dtype):
    def leaf(path: str, shape: tuple) -> np.ndarray:
        return reader.read(f"{prefix}/{path}", shape, dtype)

    paths = iter(path for path, _ in tree_items(like))
    return freeze(tree_map(lambda a: leaf(next(paths), np.shape(a)), like))


class _OptLayout:
    """A saved optimizer state's layout, validated: its class, scalars, nested states and the
    params-shaped fields stored as arrays under `prefix`."""

    def __init__(self, reader: _Reader, entry, prefix: str, depth: int = 0):
        if depth > 8:
            raise reader.fail("optimizer state nested more than 8 deep")
        if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
            raise reader.fail(
                f"opt_state must be null or {{'type': ..., 'fields': ...}}, got {entry!r}"
            )
        if set(entry) - {"type", "fields", "inner"}:
            raise reader.fail(f"unknown keys in opt_state {sorted(entry)}")
        self.cls = STATES.get(entry.get("type")) if isinstance(entry.get("type"), str) else None
        if self.cls is None:
            known = ", ".join(STATES)
            raise reader.fail(f"unknown optimizer state {entry.get('type')!r}; known: {known}")
        self.scalars = entry["fields"]
        inner = entry.get("inner", {})
        fields = set(self.cls._fields)
        if (
            not isinstance(inner, dict)
            or set(self.scalars) - fields
            or set(inner) - fields
            or set(inner) & set(self.scalars)
            or not all(_is_number(v) for v in self.scalars.values())
            or not all(isinstance(v, list) for v in inner.values())
        ):
            raise reader.fail(f"invalid {self.cls.__name__} fields {entry!r}")
        self.inner = {
            f: [_OptLayout(reader, e, f"{prefix}/{f}/{i}", depth + 1) for i, e in enumerate(v)]
            for f, v in inner.items()
        }
        self.prefix = prefix
        defaults = self.cls._field_defaults
        present = {name.split("/")[len(prefix.split("/"))] for name in reader.npz.files
                   if name.startswith(prefix + "/")}  # fmt: skip
        # a field added later with a default is absent from older files: it takes its default
        self.trees = [
            f for f in self.cls._fields
            if f not in self.scalars and f not in self.inner and not (f in defaults and f not in present)
        ]  # fmt: skip

    def entries(self, paths: list[str]) -> set:
        out = {f"{self.prefix}/{f}/{p}" for f in self.trees for p in paths}
        for layouts in self.inner.values():
            for layout in layouts:
                out |= layout.entries(paths)
        return out

    def read(self, reader: _Reader, like, dtype):
        values = {}
        for f in self.cls._fields:
            if f in self.scalars:
                values[f] = self.scalars[f]
            elif f in self.inner:
                values[f] = tuple(layout.read(reader, like, dtype) for layout in self.inner[f])
            elif f in self.trees:
                values[f] = _read_tree(reader, f"{self.prefix}/{f}", like, dtype)
        try:
            return self.cls(**values)
        except TypeError as exc:
            raise reader.fail(f"cannot rebuild {self.cls.__name__}: {exc}") from None


def _opt_layout(reader: _Reader, meta: dict) -> _OptLayout | None:
    """The optimizer state's layout, or None when the model has no optimizer state."""
    opt = meta.get("opt_state")
    return None if opt is None else _OptLayout(reader, opt, "opt")


def _settings(reader: _Reader, meta: dict) -> tuple[tuple, int, np.dtype, dict]:
    """(input_shape, seed, params dtype, user metadata), validated."""
    input_shape = _field(
        reader,
        meta,
        "input_shape",
        lambda v: isinstance(v, list) and v and all(_is_count(n) and n > 0 for n in v),
        "a list of positive integers",
    )
    seed = _field(
        reader, meta, "seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"
    )
    dtype_name = _field(reader, meta, "dtype", lambda v: isinstance(v, str), "a dtype name")
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        raise reader.fail(f"unknown dtype {dtype_name!r}") from None
    if dtype.kind != "f":
        raise reader.fail(f"params dtype must be floating point, got {dtype}")
    user = _field(reader, meta, "metadata", lambda v: isinstance(v, dict), "an object")
    return tuple(input_shape), seed, dtype, user


def _read_model(reader: _Reader) -> tuple[Model, dict]:
    meta = _read_meta(reader)
    input_shape, seed, dtype, user = _settings(reader, meta)
    spec = _read_spec(reader, meta)
    like = _expected_params(reader, spec, input_shape)
    opt = _opt_layout(reader, meta)
    paths = [path for path, _ in tree_items(like)]
    state_like = _expected_state(reader, spec, input_shape)
    expected = {f"params/{path}" for path in paths}
    if opt is not None:
        expected |= opt.entries(paths)
    expected |= {f"state/{path}" for path, _ in tree_items(state_like)}
    _check_entries(reader, {META} | expected)
    params = _read_tree(reader, "params", like, dtype)
    state = _read_tree(reader, "state", state_like, dtype)
    opt_state = None if opt is None else opt.read(reader, like, dtype)
    model = Model(
        spec=spec,
        params=params,
        input_shape=input_shape,
        opt_state=opt_state,
        seed=seed,
        dtype=dtype,
        state=state,
    )
    return model, user


def _check_entries(reader: _Reader, expected: set) -> None:
    present = set(reader.npz.files)
    if present != expected:
        extra, missing = sorted(present - expected), sorted(expected - present)
        raise reader.fail(f"unexpected entries {extra}, missing entries {missing}")


def load(path) -> Model:
    """Load a model saved by `save`.

    Args:
        path: the .npz file.
    Returns:
        The Model, with read-only params, its optimizer state, counters, input shape and seed.
    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is truncated, corrupted, of another format or a newer version,
            or names a layer whose plugin is not installed; the message names the file.
    """
    with _open(Path(path)) as reader:
        return _read_model(reader)[0]


def load_metadata(path) -> dict:
    """The user metadata stored by `save(..., metadata=...)` ({} when none was given)."""
    with _open(Path(path)) as reader:
        user = _read_meta(reader).get("metadata", {})
        if not isinstance(user, dict):
            raise reader.fail(f"metadata must be a JSON object, got {user!r}")
        return user


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(directory, model: Model, *, metadata: dict | None = None) -> Path:
    """Atomically write `directory/checkpoint.npz` (creating the directory); returns its path.

    The rename is the commit point: a crash at any instant leaves the previous checkpoint intact.
    Temporary files left by a writer that was killed are removed after a successful write, so
    use one writer per directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    save(path, model, metadata=metadata)
    for stale in directory.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    return path


def load_checkpoint(directory) -> tuple[Model, dict] | None:
    """(model, metadata) from `directory/checkpoint.npz`, or None when there is no checkpoint.

    Raises:
        CheckpointError: there is a checkpoint but it cannot be read.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    with _open(path) as reader:
        return _read_model(reader)
