"""The JSON codec of fran's files: layer specs and optimizer states as JSON, and back.

A spec is {"layer": name, "args": {...}}: its registered name and exactly its init fields, values
being numbers, strings, None, nested specs and lists of these (tuples); decoding rebuilds it
through the registry (importing nothing but the plugin of a layer the JSON names).

An optimizer state is encoded by its structure (no table of types): a NamedTuple is
{"namedtuple": "module.QualName", "fields": {...}}, a dict {"dict": {...}}, a tuple
{"tuple": [...]}, an array {"array": shape, "dtype": str} stored as the archive entry
opt/<path>, a NumPy scalar {"scalar": value, "dtype": str}; Python numbers, bools and None are
themselves. Decoding (SavedState) validates the whole JSON before any array is read, names no
class it imports (a NamedTuple name is looked up among the classes fran.optim knows, or becomes
a stand-in), and reads arrays only through a fran.files.Reader, which checks them first. Format
1's states (a fixed table of names, {"type": "AdamState", "fields": {"count": 120}}, the
params-shaped fields under opt/<field>/...) are read too and converted by fran.optim.from_legacy.
"""

from __future__ import annotations

import collections
import functools
import json
import keyword
import math
import reprlib
from typing import Any

import attrs
import numpy as np

from fran import registry
from fran.files import CheckpointError, Reader
from fran.optim import LEGACY_STATES, STATE_NAME, from_legacy, known_state, state_name
from fran.tree import freeze, tree_items, tree_map
from fran.validate import non_negative_int, number

META_MAX_DEPTH = 64  # nesting of JSON objects/lists in a file's JSON, nested network specs included
STATE_DTYPE_KINDS = "fiub"  # the arrays and NumPy scalars an optimizer state may hold
STATE_MAX_CLASSES = 64  # stand-in NamedTuple classes one file may make
STATE_MAX_FIELDS = 256  # fields of one NamedTuple in a file


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


def encode_json(obj) -> bytes:
    """obj as UTF-8 JSON, NumPy scalars as Python numbers."""
    return json.dumps(obj, default=_json_default).encode("utf-8")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_metadata(metadata) -> dict:
    """The user's metadata (None: {}) as plain JSON values, or a TypeError naming what is wrong."""
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


# ----------------------------------------------------------------------------- states -> JSON


def _is_namedtuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def encode_state(value, path: tuple, arrays: dict) -> Any:
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
            f: encode_state(v, (*path, f), arrays)
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
        return {"dict": {k: encode_state(v, (*path, k), arrays) for k, v in value.items()}}
    if type(value) is tuple:
        return {"tuple": [encode_state(v, (*path, str(i)), arrays) for i, v in enumerate(value)]}
    raise TypeError(
        f"save: optimizer state {where} is a {type(value).__name__}; a state holds NamedTuples, "
        f"dicts, tuples, NumPy arrays and scalars, Python numbers, bools and None"
    )


# ----------------------------------------------------------------------------- JSON -> states


def read_tree(reader: Reader, prefix: str, like, dtype: np.dtype):
    """The tree shaped as `like` (leaves giving shapes) read from entries <prefix>/<path>, read-only."""

    def leaf(path: str, shape: tuple) -> np.ndarray:
        return reader.read(f"{prefix}/{path}", shape, dtype)

    paths = iter(path for path, _ in tree_items(like))
    return freeze(tree_map(lambda a: leaf(next(paths), np.shape(a)), like))


class _LegacyStateLayout:
    """A format-1 optimizer state's layout, validated: its class (a name in LEGACY_STATES),
    scalars, nested states and the params-shaped fields stored as arrays under `prefix`."""

    def __init__(self, reader: Reader, entry, prefix: str, depth: int = 0):
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
            or not all(number.test(v) for v in self.scalars.values())
            or not all(isinstance(v, list) for v in inner.values())
        ):
            raise reader.fail(f"invalid {self.cls.__name__} fields {entry!r}")
        self.inner = {
            f: [
                _LegacyStateLayout(reader, e, f"{prefix}/{f}/{i}", depth + 1)
                for i, e in enumerate(v)
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

    def read(self, reader: Reader, like, dtype):
        values = {}
        for f in self.cls._fields:
            if f in self.scalars:
                values[f] = self.scalars[f]
            elif f in self.inner:
                values[f] = tuple(layout.read(reader, like, dtype) for layout in self.inner[f])
            elif f in self.trees:
                values[f] = read_tree(reader, f"{self.prefix}/{f}", like, dtype)
        try:
            return self.cls(**values)
        except TypeError as exc:
            raise reader.fail(f"cannot rebuild {self.cls.__name__}: {exc}") from None


def _decode_number(reader: Reader, node, where: str):
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


def _state_dtype(reader: Reader, name, where: str) -> np.dtype:
    try:
        dtype = np.dtype(name) if isinstance(name, str) and len(name) <= 8 else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in STATE_DTYPE_KINDS or dtype.hasobject:
        raise reader.fail(
            f"optimizer state {where}: dtype {name!r} is not a float, int or bool dtype"
        )
    return dtype


class _StateLayout:
    """A format-2 optimizer state, validated from its JSON before any array is read: the
    entries it names (opt/<path>, with shape and dtype) and the plan to rebuild it. A
    NamedTuple's name is looked up among the classes fran.optim knows (its own and those given
    to register_state), never imported; any other name becomes a stand-in NamedTuple of that
    name and those fields (fran.optim.carry_over turns it into the optimizer's own class)."""

    def __init__(self, reader: Reader, node):
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
            isinstance(shape, list)
            and len(shape) <= 32
            and all(non_negative_int.test(n) for n in shape)
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


class SavedState:
    """The optimizer state a file holds: format 1's (converted by from_legacy) or format 2's,
    validated from its JSON (`meta["opt_state"]`); `entries` names the arrays it needs, `read`
    rebuilds it."""

    def __init__(self, reader: Reader, meta: dict):
        node = meta.get("opt_state")
        self.legacy = self.layout = None
        if node is None:
            return
        if meta["version"] == 1:
            self.legacy = _LegacyStateLayout(reader, node, "opt")
        else:
            self.layout = _StateLayout(reader, node)
            self.layout.check_size()

    def entries(self, paths: list[str]) -> set:
        if self.legacy is not None:
            return self.legacy.entries(paths)
        return set(self.layout.entries) if self.layout is not None else set()

    def read(self, reader: Reader, like, dtype):
        if self.legacy is not None:
            return from_legacy(self.legacy.read(reader, like, dtype))
        return None if self.layout is None else self.layout.read()
