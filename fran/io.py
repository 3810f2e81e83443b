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

Writes are atomic (fran.files.atomic_write): a crash, a full disk or a concurrent writer leaves
either the old file or a new one complete; a write that fails raises SaveError (an OSError)
naming the file and leaves no temporary file. Loading reads the zip archive itself
(fran.files.Reader: never np.load, never pickle), refuses compressed, duplicate or non-.npy
entries, checks every .npy header against what the spec implies (names, shapes, dtypes) and
against the bytes the entry really holds *before* reading its data, caps the JSON at
META_MAX_BYTES and META_MAX_DEPTH, and rebuilds the specs through the registry with exactly their
saved arguments (fran.codec). So loading allocates no more than the entries' own stored bytes,
imports nothing but the plugin of a layer the file names, and every defect is a CheckpointError
naming the file.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np

import fran
from fran import engine
from fran.codec import (
    META_MAX_DEPTH,
    SavedState,
    check_metadata,
    decode_spec,
    encode_json,
    encode_spec,
    encode_state,
    json_depth,
    read_tree,
)
from fran.files import (
    MAX_HEADER_BYTES,
    CheckpointError,
    Reader,
    SaveError,
    atomic_write,
    open_archive,
    remove_stale_temps,
    save_error,
    why,
    write_json,
)
from fran.model import Model
from fran.tree import tree_items, tree_leaves
from fran.validate import Check, non_negative_int, shape_tuple

__all__ = [  # fran.io's public names (the codec's and the files' too, as before they moved)
    "CHECKPOINT_NAME",
    "FORMAT",
    "META",
    "META_MAX_BYTES",
    "META_MAX_DEPTH",
    "VERSION",
    "CheckpointError",
    "SaveError",
    "atomic_write",
    "decode_spec",
    "encode_spec",
    "json_depth",
    "load",
    "load_checkpoint",
    "load_metadata",
    "save",
    "save_checkpoint",
    "write_json",
]

FORMAT = "fran.model"
VERSION = 2  # 2: optimizer states encoded by their structure (1: by a table of names)
META = "__meta__"
CHECKPOINT_NAME = "checkpoint.npz"
META_MAX_BYTES = 64 * 2**20  # the JSON entry (spec + user metadata): save refuses, load refuses
_CAPS = {META: (META_MAX_BYTES + MAX_HEADER_BYTES, f"META_MAX_BYTES = {META_MAX_BYTES:,}")}


# ----------------------------------------------------------------------------- model -> arrays


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
    opt = encode_state(model.opt_state, (), arrays)
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
        "metadata": check_metadata(metadata),
    }
    if json_depth(meta) > META_MAX_DEPTH:
        raise ValueError(
            f"save: the network spec and metadata nest {json_depth(meta)} levels deep; a fran file "
            f"holds at most META_MAX_DEPTH = {META_MAX_DEPTH} (load refuses deeper ones)"
        )
    raw = encode_json(meta)
    if len(raw) > META_MAX_BYTES:
        raise ValueError(
            f"save: the network spec and metadata take {len(raw):,} bytes of JSON; a fran file "
            f"holds at most META_MAX_BYTES = {META_MAX_BYTES:,} (load refuses larger ones)"
        )
    return {META: np.frombuffer(raw, dtype=np.uint8), **arrays}


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


def _open(path: Path, caller: str):
    """The model file `path` as a fran.files.Reader, its metadata entry capped."""
    return open_archive(path, caller, _CAPS)


def _read_meta(reader: Reader) -> dict:
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


_OBJECT = Check(lambda v: isinstance(v, dict), "an object")
_INTEGER = Check(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_NAME = Check(lambda v: isinstance(v, str), "a dtype name")


def _field(reader: Reader, meta: dict, key: str, check: Check):
    value = meta.get(key)
    if not check.test(value):
        raise reader.fail(f"metadata field {key!r} must be {check.expected}, got {value!r}")
    return value


def _read_spec(reader: Reader, meta: dict) -> engine.network:
    net = _field(reader, meta, "network", _OBJECT)
    layers = net.get("layers")
    if not isinstance(layers, list) or not layers:
        raise reader.fail(f"network layers must be a non-empty list, got {layers!r}")
    for key in ("epoch", "step"):
        if not non_negative_int.test(net.get(key)):
            raise reader.fail(f"network {key} must be an integer >= 0, got {net.get(key)!r}")
    try:
        specs = [decode_spec(entry, f"layer {i}") for i, entry in enumerate(layers)]
        return engine.network(specs, net["epoch"], net["step"])
    except CheckpointError as exc:
        raise reader.fail(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise reader.fail(f"invalid network: {exc}") from None


def _expected_params(
    reader: Reader, spec: engine.network, input_shape: tuple, dtype: np.dtype
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
                f"layer {i} ({layer!r}) implies impossible params: {why(exc)}"
            ) from None
        need += sum(np.size(leaf) for leaf in tree_leaves(params)) * dtype.itemsize
        if need > stored:
            raise reader.fail(
                f"layers 0..{i} (up to {layer!r}) imply {need:,} bytes of {dtype} params, more than "
                f"the {stored:,} bytes the file's entries hold"
            )
        like.append(params)
    return tuple(like)


def _expected_state(reader: Reader, spec: engine.network, input_shape: tuple, dtype) -> tuple:
    """The layers' state tree the spec implies (running statistics; files before v2 have none),
    shape-only (fran.engine.state_shapes), its size checked against the bytes the file holds."""
    try:
        state = engine.serial_state_shapes(spec.layers, input_shape, dtype)
    except (ValueError, MemoryError, OverflowError) as exc:
        raise reader.fail(f"the network's state does not fit its input shape: {why(exc)}") from None
    need = sum(np.size(leaf) for leaf in tree_leaves(state)) * np.dtype(dtype).itemsize
    stored = sum(info.file_size for info in reader.infos.values())
    if need > stored:
        raise reader.fail(f"the layers' state implies {need:,} bytes, more than the file holds")
    return state


def _settings(reader: Reader, meta: dict) -> tuple[tuple, int, np.dtype, dict]:
    """(input_shape, seed, params dtype, user metadata), validated."""
    input_shape = _field(reader, meta, "input_shape", shape_tuple)
    seed = _field(reader, meta, "seed", _INTEGER)
    dtype_name = _field(reader, meta, "dtype", _NAME)
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        raise reader.fail(f"unknown dtype {dtype_name!r}") from None
    if dtype.kind != "f":
        raise reader.fail(f"params dtype must be floating point, got {dtype}")
    user = _field(reader, meta, "metadata", _OBJECT)
    return tuple(input_shape), seed, dtype, user


def _read_model(reader: Reader) -> tuple[Model, dict]:
    meta = _read_meta(reader)
    input_shape, seed, dtype, user = _settings(reader, meta)
    spec = _read_spec(reader, meta)
    like = _expected_params(reader, spec, input_shape, dtype)
    opt = SavedState(reader, meta)
    paths = [path for path, _ in tree_items(like)]
    state_like = _expected_state(reader, spec, input_shape, dtype)
    expected = {f"params/{path}" for path in paths}
    expected |= opt.entries(paths)
    expected |= {f"state/{path}" for path, _ in tree_items(state_like)}
    _check_entries(reader, {META} | expected)
    params = read_tree(reader, "params", like, dtype)
    state = read_tree(reader, "state", state_like, dtype)
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


def _check_entries(reader: Reader, expected: set) -> None:
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
        raise save_error("save_checkpoint", path, exc, "cannot create its folder") from exc
    arrays = _arrays_and_meta(model, metadata)
    atomic_write(path, lambda fh: np.savez(fh, allow_pickle=False, **arrays), "save_checkpoint")
    remove_stale_temps(path)
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
