"""Saving and loading models: one `.npz` file, written atomically, read without unpickling.

Layout (format "fran.model", version 2), all entries plain `.npy` arrays in one zip archive:

    __meta__            uint8 array holding UTF-8 JSON: format, version, fran_version, the network
                        ({"layer": name, "args": {...}} per layer, epoch, step), input_shape, seed,
                        dtype, opt_state (null, or the optimizer state by its structure: see
                        _encode_state) and the user's metadata
    params/<i>/<key>    the params of layer i, e.g. params/0/w (paths as fran.tree.tree_items)
    state/<i>/<key>     the layers' state (running statistics), e.g. state/1/mean (none before v2)
    opt/<path>          each array of the optimizer state at its path of fields, keys and indices,
                        e.g. opt/inner/1/mu/0/w (adam's first moment of layer 0's w)

Version 1 files (still read) named the optimizer state's class from a fixed table,
{"type": "AdamState", "fields": {"count": 120}}, its params-shaped fields under opt/<field>/...

Writes go to a uniquely named temporary file in the target's folder, are fsynced and then renamed
over the target, so a crash, a full disk or a concurrent writer leaves either the old file or a
new one complete; a write that fails raises SaveError (an OSError) naming the file and leaves no
temporary file. Loading reads the zip archive itself (never np.load, never pickle), refuses
compressed, duplicate or non-.npy entries, checks every .npy header against what the spec implies
(names, shapes, dtypes) and against the bytes the entry really holds *before* reading its data, caps
the JSON at META_MAX_BYTES and META_MAX_DEPTH, and rebuilds the specs through the registry with
exactly their saved arguments. So loading allocates no more than the entries' own stored bytes,
imports nothing but the plugin of a layer the file names, and every defect is a CheckpointError
naming the file.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import json
import keyword
import math
import os
import reprlib
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

import fran
from fran import engine, registry
from fran.model import Model
from fran.optim import LEGACY_STATES, STATE_NAME, from_legacy, known_state, state_name
from fran.tree import freeze, tree_items, tree_leaves, tree_map

FORMAT = "fran.model"
VERSION = 2  # 2: optimizer states encoded by their structure (1: by a table of names)
META = "__meta__"
CHECKPOINT_NAME = "checkpoint.npz"
META_MAX_BYTES = 64 * 2**20  # the JSON entry (spec + user metadata): save refuses, load refuses
META_MAX_DEPTH = 64  # nesting of JSON objects/lists in that entry, nested network specs included
MAX_HEADER_BYTES = 10_000  # a .npy header longer than this is refused unread


class CheckpointError(ValueError):
    """A saved model that cannot be read: truncated, corrupted, hostile, of another format or
    version, or naming a layer no installed plugin provides. The message names the file."""


class SaveError(OSError):
    """`save`, `save_checkpoint` or `write_json` could not write the file completely (no space, a
    file-size limit, a read-only folder, ...). `.filename` is the target, `.errno` the cause's; the
    previous file at that path is untouched and no temporary file is left behind."""


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
        return encode_spec(value, where)
    raise TypeError(
        f"save: {where} is {value!r} of type {type(value).__name__}; only ints, floats, strs, "
        f"bools, None, layer specs and tuples of these can be saved"
    )


def encode_spec(spec, where: str) -> dict:
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
        return decode_spec(value, where)
    return value


def decode_spec(entry, where: str):
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
    fields = {a.alias for a in attrs.fields(cls) if a.init} if attrs.has(cls) else set()
    unknown, missing = sorted(set(entry["args"]) - fields), sorted(fields - set(entry["args"]))
    if unknown or missing:
        raise CheckpointError(
            f"{where} ({name}): the saved arguments must be exactly {name}'s fields "
            f"{sorted(fields)}; unknown {unknown}, missing {missing}"
        )
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


def json_depth(tree) -> int:
    """How deeply JSON objects and lists nest in `tree` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, (list, tuple)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


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


STATE_DTYPE_KINDS = "fiub"  # the arrays and NumPy scalars an optimizer state may hold


def _is_namedtuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _encode_state(value, path: tuple, arrays: dict) -> Any:
    """An optimizer state as JSON, by its structure (no table of types): a NamedTuple is
    {"namedtuple": "module.QualName", "fields": {...}}, a dict {"dict": {...}}, a tuple
    {"tuple": [...]}, an array {"array": shape, "dtype": str} stored as the entry opt/<path>, a
    NumPy scalar {"scalar": value, "dtype": str}; Python numbers, bools and None are themselves."""
    where = "/".join(("opt", *path))
    if len(path) > META_MAX_DEPTH:
        raise ValueError(f"save: optimizer state {where} nests deeper than META_MAX_DEPTH")
    if value is None or isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in STATE_DTYPE_KINDS:
            raise TypeError(
                f"save: optimizer state {where} has dtype {value.dtype}; states hold arrays and "
                f"scalars of floats, ints or bools"
            )
        if isinstance(value, np.generic):
            return {"scalar": value.item(), "dtype": value.dtype.str}
        arrays[where] = value
        return {"array": list(value.shape), "dtype": value.dtype.str}
    if _is_namedtuple(value):
        name = state_name(type(value))
        if not STATE_NAME.fullmatch(name):
            raise TypeError(f"save: optimizer state {where} is a {name!r}, a name fran cannot save")
        fields = {
            f: _encode_state(v, (*path, f), arrays)
            for f, v in zip(value._fields, value, strict=True)
        }
        return {"namedtuple": name, "fields": fields}
    if isinstance(value, dict):
        for key in value:
            if not (isinstance(key, str) and key and "/" not in key):
                raise TypeError(
                    f"save: optimizer state {where} has the dict key {key!r}; keys must be "
                    f"non-empty strings without '/'"
                )
        return {"dict": {k: _encode_state(v, (*path, k), arrays) for k, v in value.items()}}
    if type(value) is tuple:
        return {"tuple": [_encode_state(v, (*path, str(i)), arrays) for i, v in enumerate(value)]}
    raise TypeError(
        f"save: optimizer state {where} is a {type(value).__name__}; a state holds NamedTuples, "
        f"dicts, tuples, NumPy arrays and scalars, Python numbers, bools and None"
    )


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
    opt = _encode_state(model.opt_state, (), arrays)
    layers = [encode_spec(layer, f"layer {i}") for i, layer in enumerate(model.spec.layers)]
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
    if json_depth(meta) > META_MAX_DEPTH:
        raise ValueError(
            f"save: the network spec and metadata nest {json_depth(meta)} levels deep; a fran file "
            f"holds at most META_MAX_DEPTH = {META_MAX_DEPTH} (load refuses deeper ones)"
        )
    raw = json.dumps(meta, default=_json_default).encode("utf-8")
    if len(raw) > META_MAX_BYTES:
        raise ValueError(
            f"save: the network spec and metadata take {len(raw):,} bytes of JSON; a fran file "
            f"holds at most META_MAX_BYTES = {META_MAX_BYTES:,} (load refuses larger ones)"
        )
    return {META: np.frombuffer(raw, dtype=np.uint8), **arrays}


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
    sweeping writer whether the file's writer is still alive (see save_checkpoint)."""
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
        raise _save_error(
            caller, path, exc, "cannot create a temporary file in its folder"
        ) from exc
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
            raise _save_error(caller, path, exc, "could not be written completely") from exc
        raise
    _fsync_dir(directory)


def _save_error(caller: str, path: Path, exc: OSError, what: str) -> SaveError:
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


def save(path, model: Model, *, metadata: dict | None = None) -> None:
    """Save a model (spec, params, optimizer state, counters, seed) to one .npz file, atomically.

    Args:
        path: the file to write, exactly as given (no ".npz" is appended).
        model: a fran Model.
        metadata: an optional JSON-serialisable dict stored with the model (see load_metadata).
    Raises:
        TypeError: a spec field or the metadata cannot be stored as JSON.
        ValueError: the spec and metadata exceed META_MAX_BYTES or META_MAX_DEPTH.
        SaveError: an OSError: the file could not be written completely (no space, a file-size
            limit, a read-only folder); `path` is as it was before and no temporary file is left.
    """
    arrays = _arrays_and_meta(model, metadata)
    atomic_write(Path(path), lambda fh: np.savez(fh, allow_pickle=False, **arrays))


# ----------------------------------------------------------------------------- reading


class _Reader:
    """An open zip archive whose entries are checked (layout, then .npy header) before any data is
    read; reads are bounded by what the checked header and the archive both say."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, size: int, caller: str):
        self.path, self.zip, self.size, self.caller = path, archive, size, caller
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise self.fail(f"entry {name!r} is not a .npy array")
            key = name[: -len(".npy")]
            if key in self.infos:
                raise self.fail(f"entry {name!r} appears twice in the archive")
            if key == META and info.file_size > META_MAX_BYTES + MAX_HEADER_BYTES:
                raise self.fail(
                    f"the {META!r} entry declares {info.file_size:,} bytes, over the cap of "
                    f"META_MAX_BYTES = {META_MAX_BYTES:,}"
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
def _open(path: Path, caller: str):
    """A _Reader over `path`; archive-level defects become CheckpointError naming the file (and
    the public function, `caller`, that was reading it)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(6) == b"\x93NUMPY":
            raise CheckpointError(f"{caller}: {path}: a single .npy array, not a fran .npz archive")
        fh.seek(0)
        try:
            archive = zipfile.ZipFile(fh)
        except Exception as exc:
            raise CheckpointError(
                f"{caller}: {path}: not a readable .npz archive: {_why(exc)}"
            ) from exc
        with archive:
            try:
                yield _Reader(path, archive, size, caller)
            except CheckpointError:
                raise
            except Exception as exc:
                raise CheckpointError(
                    f"{caller}: {path}: corrupted or truncated: {_why(exc)}"
                ) from exc


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_meta(reader: _Reader) -> dict:
    if META not in reader.infos:
        raise reader.fail(f"no {META!r} entry; not a file written by fran.save")
    raw = reader.read(META, None, np.dtype(np.uint8), raw=True)
    if len(raw) > META_MAX_BYTES:
        raise reader.fail(
            f"the {META!r} entry holds {len(raw):,} bytes, over the cap of "
            f"META_MAX_BYTES = {META_MAX_BYTES:,}"
        )
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise reader.fail(f"the {META!r} entry is not valid JSON: {exc}") from None
    except RecursionError:
        raise reader.fail(f"the {META!r} entry nests deeper than META_MAX_DEPTH") from None
    if not isinstance(meta, dict):
        raise reader.fail(f"the {META!r} entry is not a JSON object")
    if json_depth(meta) > META_MAX_DEPTH:
        raise reader.fail(
            f"the {META!r} entry nests {json_depth(meta)} levels deep, over "
            f"META_MAX_DEPTH = {META_MAX_DEPTH}"
        )
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
        specs = [decode_spec(entry, f"layer {i}") for i, entry in enumerate(layers)]
        return engine.network(specs, net["epoch"], net["step"])
    except CheckpointError as exc:
        raise reader.fail(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise reader.fail(f"invalid network: {exc}") from None


def _expected_params(
    reader: _Reader, spec: engine.network, input_shape: tuple, dtype: np.dtype
) -> tuple:
    """The params tree the spec implies, as a shape-only tree (fran.engine.param_shapes: no
    leaf is allocated), checked layer by layer against the bytes the file's entries hold, so a
    hostile spec (dense(n_out=10**12)) is refused before anything is reserved."""
    try:
        shapes = engine.layer_shapes(spec.layers, input_shape)
    except ValueError as exc:
        raise reader.fail(f"the network does not fit its input shape: {exc}") from None
    stored = sum(info.file_size for info in reader.infos.values())
    like, need = [], 0
    for i, (layer, shape) in enumerate(zip(spec.layers, shapes[:-1], strict=True)):
        try:
            params = engine.layer_param_shapes(layer, shape, dtype)
        except (MemoryError, OverflowError, ValueError, TypeError) as exc:
            raise reader.fail(
                f"layer {i} ({layer!r}) implies impossible params: {_why(exc)}"
            ) from None
        need += sum(np.size(leaf) for leaf in tree_leaves(params)) * dtype.itemsize
        if need > stored:
            raise reader.fail(
                f"layers 0..{i} (up to {layer!r}) imply {need:,} bytes of {dtype} params, more than "
                f"the {stored:,} bytes the file's entries hold"
            )
        like.append(params)
    return tuple(like)


def _expected_state(reader: _Reader, spec: engine.network, input_shape: tuple, dtype) -> tuple:
    """The layers' state tree the spec implies (running statistics; files before v2 have none),
    shape-only (fran.engine.state_shapes), its size checked against the bytes the file holds."""
    try:
        state = engine.serial_state_shapes(spec.layers, input_shape, dtype)
    except (ValueError, MemoryError, OverflowError) as exc:
        raise reader.fail(
            f"the network's state does not fit its input shape: {_why(exc)}"
        ) from None
    need = sum(np.size(leaf) for leaf in tree_leaves(state)) * np.dtype(dtype).itemsize
    stored = sum(info.file_size for info in reader.infos.values())
    if need > stored:
        raise reader.fail(f"the layers' state implies {need:,} bytes, more than the file holds")
    return state


def _read_tree(reader: _Reader, prefix: str, like, dtype: np.dtype):
    def leaf(path: str, shape: tuple) -> np.ndarray:
        return reader.read(f"{prefix}/{path}", shape, dtype)

    paths = iter(path for path, _ in tree_items(like))
    return freeze(tree_map(lambda a: leaf(next(paths), np.shape(a)), like))


class _LegacyOptLayout:
    """A format-1 optimizer state's layout, validated: its class (a name in LEGACY_STATES),
    scalars, nested states and the params-shaped fields stored as arrays under `prefix`."""

    def __init__(self, reader: _Reader, entry, prefix: str, depth: int = 0):
        if depth > 8:
            raise reader.fail("optimizer state nested more than 8 deep")
        if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
            raise reader.fail(
                f"opt_state must be null or {{'type': ..., 'fields': ...}}, got {entry!r}"
            )
        if set(entry) - {"type", "fields", "inner"}:
            raise reader.fail(f"unknown keys in opt_state {sorted(entry)}")
        name = entry.get("type")
        self.cls = LEGACY_STATES.get(name) if isinstance(name, str) else None
        if self.cls is None:
            known = ", ".join(LEGACY_STATES)
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
            f: [
                _LegacyOptLayout(reader, e, f"{prefix}/{f}/{i}", depth + 1) for i, e in enumerate(v)
            ]
            for f, v in inner.items()
        }
        self.prefix = prefix
        defaults = self.cls._field_defaults
        present = {name.split("/")[len(prefix.split("/"))] for name in reader.files
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


def _decode_number(reader: _Reader, node, where: str):
    """A NumPy scalar {"scalar": value, "dtype": str}, rebuilt exactly (JSON keeps a float64's
    digits, and every float32, int or bool value fits its JSON number)."""
    if set(node) != {"scalar", "dtype"}:
        raise reader.fail(
            f"optimizer state {where}: a scalar is {{'scalar', 'dtype'}}, got {node!r}"
        )
    dtype = _state_dtype(reader, node["dtype"], where)
    value = node["scalar"]
    if not isinstance(value, (int, float)) or dtype.kind != "b" and isinstance(value, bool):
        raise reader.fail(f"optimizer state {where}: scalar {value!r} is not a number")
    try:
        with np.errstate(all="raise"):
            out = dtype.type(value)
    except (OverflowError, FloatingPointError, ValueError, TypeError) as exc:
        raise reader.fail(f"optimizer state {where}: {value!r} is no {dtype}: {exc}") from None
    if out != value and not (isinstance(value, float) and math.isnan(value)):
        raise reader.fail(f"optimizer state {where}: {value!r} does not fit {dtype}")
    return out


def _state_dtype(reader: _Reader, name, where: str) -> np.dtype:
    try:
        dtype = np.dtype(name) if isinstance(name, str) and len(name) <= 8 else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in STATE_DTYPE_KINDS or dtype.hasobject:
        raise reader.fail(
            f"optimizer state {where}: dtype {name!r} is not a float, int or bool dtype"
        )
    return dtype


STATE_MAX_CLASSES = 64  # stand-in NamedTuple classes one file may make
STATE_MAX_FIELDS = 256  # fields of one NamedTuple in a file


class _StateLayout:
    """A format-2 optimizer state, validated from its JSON before any array is read: the
    entries it names (opt/<path>, with shape and dtype) and the plan to rebuild it. A
    NamedTuple's name is looked up among the classes fran.optim knows (its own and those given
    to register_state), never imported; any other name becomes a stand-in NamedTuple of that
    name and those fields (fran.optim.carry_over turns it into the optimizer's own class)."""

    def __init__(self, reader: _Reader, node):
        self.reader, self.entries, self.classes = reader, {}, {}
        self.plan = self._parse(node, ())

    def fail(self, path: tuple, what: str) -> CheckpointError:
        return self.reader.fail(f"optimizer state {'/'.join(('opt', *path))}: {what}")

    def _parse(self, node, path: tuple):
        if node is None or isinstance(node, (bool, int, float)):
            return ("value", node)
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise self.fail(path, f"expected null, a number or a state node, got {_short(node)}")
        if "array" in node:
            return self._array(node, path)
        if "scalar" in node:
            return ("value", _decode_number(self.reader, node, "/".join(("opt", *path))))
        if "tuple" in node and len(node) == 1 and isinstance(node["tuple"], list):
            return ("tuple", [self._parse(v, (*path, str(i))) for i, v in enumerate(node["tuple"])])
        if "dict" in node and len(node) == 1 and isinstance(node["dict"], dict):
            for key in node["dict"]:
                if not key or "/" in key:
                    raise self.fail(path, f"dict key {key!r} is empty or holds '/'")
            return ("dict", {k: self._parse(v, (*path, k)) for k, v in node["dict"].items()})
        if set(node) == {"namedtuple", "fields"} and isinstance(node["fields"], dict):
            cls = self._class(node["namedtuple"], node["fields"], path)
            fields = {f: self._parse(v, (*path, f)) for f, v in node["fields"].items()}
            return ("namedtuple", cls, fields)
        raise self.fail(path, f"not a state node: {_short(node)}")

    def _array(self, node, path: tuple):
        shape = node["array"]
        if set(node) != {"array", "dtype"} or not (
            isinstance(shape, list) and len(shape) <= 32 and all(_is_count(n) for n in shape)
        ):
            raise self.fail(
                path, f"an array is {{'array': shape, 'dtype': str}}, got {_short(node)}"
            )
        dtype = _state_dtype(self.reader, node["dtype"], "/".join(("opt", *path)))
        name = "/".join(("opt", *path))
        self.entries[name] = (tuple(shape), dtype)
        return ("array", name)

    def _class(self, name, fields: dict, path: tuple) -> type:
        if not (isinstance(name, str) and len(name) <= 256 and STATE_NAME.fullmatch(name)):
            raise self.fail(path, f"{_short(name)} is not a NamedTuple name")
        if len(fields) > STATE_MAX_FIELDS:
            raise self.fail(path, f"{name} has {len(fields)} fields, over {STATE_MAX_FIELDS}")
        cls = known_state(name)
        if cls is not None:
            missing = [f for f in cls._fields if f not in fields and f not in cls._field_defaults]
            unknown = [f for f in fields if f not in cls._fields]
            if missing or unknown:
                raise self.fail(
                    path,
                    f"{name}'s fields are {list(cls._fields)}; the file's lack {missing} and "
                    f"add {unknown}",
                )
            return cls
        key = (name, tuple(fields))
        if key not in self.classes:
            if len(self.classes) >= STATE_MAX_CLASSES:
                raise self.fail(path, f"more than {STATE_MAX_CLASSES} unknown NamedTuple classes")
            self.classes[key] = _stand_in(name, tuple(fields), self.fail, path)
        return self.classes[key]

    def check_size(self) -> None:
        """Refuse arrays whose declared bytes exceed what the file's entries hold, unread."""
        need = sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.entries.values())
        stored = sum(info.file_size for info in self.reader.infos.values())
        if need > stored:
            raise self.reader.fail(
                f"the optimizer state declares {need:,} bytes of arrays, more than the "
                f"{stored:,} bytes the file's entries hold"
            )

    def read(self):
        return self._build(self.plan)

    def _build(self, plan):
        kind = plan[0]
        if kind == "value":
            return plan[1]
        if kind == "array":
            shape, dtype = self.entries[plan[1]]
            array = self.reader.read(plan[1], shape, dtype)
            array.flags.writeable = False
            return array
        if kind == "tuple":
            return tuple(self._build(p) for p in plan[1])
        if kind == "dict":
            return {k: self._build(p) for k, p in plan[1].items()}
        cls, fields = plan[1], plan[2]
        try:
            return cls(**{f: self._build(p) for f, p in fields.items()})
        except (TypeError, ValueError) as exc:
            raise self.reader.fail(f"cannot rebuild {state_name(cls)}: {exc}") from None


def _short(value) -> str:
    """A bounded repr for messages about hostile JSON (never the whole of a huge node)."""
    return reprlib.repr(value)


def _stand_in(name: str, fields: tuple, fail, path) -> type:
    """A NamedTuple class standing for the saved class `name`, which this process does not know."""
    last = name.rsplit(".", 1)[-1]
    good = all(
        f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_") for f in fields
    )
    if not (last.isidentifier() and not keyword.iskeyword(last) and good):
        raise fail(path, f"{name} with fields {_short(list(fields))} cannot be a NamedTuple")
    return _stand_in_class(name, last, fields)


@functools.lru_cache(maxsize=256)
def _stand_in_class(name: str, last: str, fields: tuple) -> type:
    """One class per (name, fields) in a process, so states loaded twice compare equal."""
    cls = collections.namedtuple(last, fields, module="fran.optim.saved")
    cls._fran_saved_as = name
    return cls


class _OptState:
    """The optimizer state a file holds: format 1's (converted by from_legacy) or format 2's."""

    def __init__(self, reader: _Reader, meta: dict):
        node = meta.get("opt_state")
        self.legacy = self.layout = None
        if node is None:
            return
        if meta["version"] == 1:
            self.legacy = _LegacyOptLayout(reader, node, "opt")
        else:
            self.layout = _StateLayout(reader, node)
            self.layout.check_size()

    def entries(self, paths: list[str]) -> set:
        if self.legacy is not None:
            return self.legacy.entries(paths)
        return set(self.layout.entries) if self.layout is not None else set()

    def read(self, reader: _Reader, like, dtype):
        if self.legacy is not None:
            return from_legacy(self.legacy.read(reader, like, dtype))
        return None if self.layout is None else self.layout.read()


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
    like = _expected_params(reader, spec, input_shape, dtype)
    opt = _OptState(reader, meta)
    paths = [path for path, _ in tree_items(like)]
    state_like = _expected_state(reader, spec, input_shape, dtype)
    expected = {f"params/{path}" for path in paths}
    expected |= opt.entries(paths)
    expected |= {f"state/{path}" for path, _ in tree_items(state_like)}
    _check_entries(reader, {META} | expected)
    params = _read_tree(reader, "params", like, dtype)
    state = _read_tree(reader, "state", state_like, dtype)
    opt_state = opt.read(reader, like, dtype)
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
    present = set(reader.files)
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
    with _open(Path(path), "load") as reader:
        return _read_model(reader)[0]


def load_metadata(path) -> dict:
    """The user metadata stored by `save(..., metadata=...)` ({} when none was given)."""
    with _open(Path(path), "load_metadata") as reader:
        user = _read_meta(reader).get("metadata", {})
        if not isinstance(user, dict):
            raise reader.fail(f"metadata must be a JSON object, got {user!r}")
        return user


# ----------------------------------------------------------------------------- checkpoints


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


def save_checkpoint(directory, model: Model, *, metadata: dict | None = None) -> Path:
    """Atomically write `directory/checkpoint.npz` (creating the directory); returns its path.

    The rename is the commit point: a crash at any instant leaves the previous checkpoint intact,
    and writers running at the same time into the same folder all succeed, leaving one complete
    checkpoint of one of them. After a successful write, temporary files left by writers that are
    no longer running (killed mid-write) are removed; those of live writers are left alone.

    Raises:
        SaveError: an OSError: the folder cannot be created or the checkpoint cannot be written
            completely (no space, a file-size limit, a read-only folder); the previous checkpoint
            is intact and no temporary file is left. The message names the file.
        TypeError, ValueError: as for `save`.
    """
    directory = Path(directory)
    path = directory / CHECKPOINT_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _save_error("save_checkpoint", path, exc, "cannot create its folder") from exc
    arrays = _arrays_and_meta(model, metadata)
    atomic_write(path, lambda fh: np.savez(fh, allow_pickle=False, **arrays), "save_checkpoint")
    prefix = f".{CHECKPOINT_NAME}."
    for stale in directory.glob(f"{prefix}*.tmp"):
        if not _writer_alive(stale, prefix):
            with contextlib.suppress(OSError):
                stale.unlink()
    return path


def load_checkpoint(directory) -> tuple[Model, dict] | None:
    """Load the checkpoint that save_checkpoint wrote.

    Args:
        directory: the folder given to save_checkpoint; or the checkpoint file itself.
    Returns:
        (Model, metadata), or None when the folder exists but holds no checkpoint.npz yet.
    Raises:
        CheckpointError: there is a checkpoint but it cannot be read; the message names the file.
        FileNotFoundError: `directory` does not exist (a typo is not "no checkpoint yet").
    """
    given = Path(directory)
    if given.is_file():
        path = given
    elif not given.exists():
        raise FileNotFoundError(
            errno.ENOENT,
            f"load_checkpoint: directory argument {str(directory)!r} does not exist; expected "
            f"the folder passed to save_checkpoint (or an existing checkpoint file)",
            str(directory),
        )
    else:
        path = given / CHECKPOINT_NAME
        if not path.exists():
            return None
    with _open(path, "load_checkpoint") as reader:
        return _read_model(reader)
