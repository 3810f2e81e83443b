"""How a layer kind maps to ONNX nodes, both ways: fran's built-ins and plugins alike.

    fran.onnx.register(spec_cls, export=f, load=g, ops=("AveragePool",))

export(spec, ctx) -> the name of the layer's output tensor, given an ExportContext (its input
tensor's name, the names of the layer's params and state as initializers, `node` to add nodes).
load(node, ctx) -> (spec, params, state, output tensor name) for a node whose op is one of `ops`,
or None when this node is not the layer's pattern; a loader that recognises its op but not an
attribute raises ctx.fail(node, what is missing), never returns a different layer.

A plugin distribution declares the mapping with an entry point in the group ``fran.onnx`` named
like its layer, whose value is the module that calls register (examples/fran_avgpool):

    [project.entry-points."fran.onnx"]
    avgpooling = "fran_avgpool_onnx"

Entry points are loaded lazily: on export, the one named like a layer without a mapping; on load,
all of them the first time a node's op has no loader.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fran import registry
from fran.onnx._errors import OnnxError

GROUP = "fran.onnx"


class Mapping(NamedTuple):
    spec_cls: type
    export: Callable[..., str]
    load: Callable[..., Any] | None
    ops: tuple[tuple[str, str], ...]  # (domain, op_type) pairs the loader recognises


_BY_TYPE: dict[type, Mapping] = {}
_BY_OP: dict[tuple[str, str], list[Mapping]] = {}


def register(spec_cls: type, *, export, load=None, ops=(), domain: str = "") -> type:
    """Map the layer kind `spec_cls` to ONNX: `export(spec, ctx)` adds its nodes; `load(node,
    ctx)`, if given, is tried on every node whose op is in `ops` (of `domain`, "" for ONNX's)."""
    if not isinstance(spec_cls, type):
        raise TypeError(f"fran.onnx.register: spec_cls must be a class, got {spec_cls!r}")
    if not callable(export) or (load is not None and not callable(load)):
        raise TypeError(
            f"fran.onnx.register({spec_cls.__name__}): export and load must be callable"
        )
    if isinstance(ops, str) or not all(isinstance(op, str) for op in ops):
        raise TypeError(f"fran.onnx.register({spec_cls.__name__}): ops must be a tuple of op names")
    if load is not None and not ops:
        raise ValueError(
            f"fran.onnx.register({spec_cls.__name__}): a loader needs the ops it reads"
        )
    old = _BY_TYPE.pop(spec_cls, None)
    if old is not None:  # registering again replaces the mapping (a module reloaded)
        for key in old.ops:
            _BY_OP[key] = [m for m in _BY_OP.get(key, []) if m.spec_cls is not spec_cls]
    mapping = Mapping(spec_cls, export, load, tuple((domain, op) for op in ops))
    _BY_TYPE[spec_cls] = mapping
    for key in mapping.ops:
        _BY_OP.setdefault(key, []).append(mapping)
    return spec_cls


def add_loader(spec_cls, load, ops, domain: str = "") -> None:
    """One more pattern read as spec_cls's layer (dense from MatMul + Add besides Gemm)."""
    mapping = Mapping(spec_cls, None, load, tuple((domain, op) for op in ops))
    for key in mapping.ops:
        _BY_OP.setdefault(key, []).append(mapping)


def _entry_points() -> tuple:
    """The installed entry points of group `fran.onnx` (tests monkeypatch this function)."""
    import importlib.metadata

    try:
        return tuple(importlib.metadata.entry_points(group=GROUP))
    except Exception:  # an unreadable distribution: no plugin mappings rather than a crash
        return ()


def _load_entry_point(ep) -> None:
    try:
        ep.load()
    except Exception as exc:
        raise OnnxError(
            f"fran.onnx: the ONNX mapping plugin {ep.name!r} ({ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def mapping_for(spec) -> Mapping:
    """The export mapping of spec's exact type, loading its plugin's entry point on first use."""
    mapping = _BY_TYPE.get(type(spec))
    if mapping is not None:
        return mapping
    try:
        name = registry.rules_for(spec).name
    except registry.RegistryError as exc:
        raise OnnxError(f"fran.onnx.export: {exc}") from None
    for ep in _entry_points():
        if ep.name == name:
            _load_entry_point(ep)
    mapping = _BY_TYPE.get(type(spec))
    if mapping is None:
        raise OnnxError(
            f"fran.onnx.export: layer {name!r} ({spec!r}) has no ONNX mapping; its plugin can give "
            f"one with fran.onnx.register({type(spec).__name__}, export=..., load=..., ops=...) "
            f"or an entry point in the group {GROUP!r}"
        )
    return mapping


@functools.cache
def _all_plugins_loaded() -> bool:
    for ep in _entry_points():
        _load_entry_point(ep)
    return True


def loaders_for(domain: str, op: str) -> list[Mapping]:
    """The mappings whose loader reads (domain, op), after loading every plugin if none does."""
    found = _BY_OP.get((domain, op))
    if not found:
        _all_plugins_loaded()
        found = _BY_OP.get((domain, op), [])
    return list(found)


def known_ops() -> list[str]:
    return sorted(op if not domain else f"{domain}.{op}" for domain, op in _BY_OP)


class ExportContext:
    """What a layer's export function sees: `x` (its input tensor's name), `shape` (the
    per-sample input shape), `dtype`, `param(key)` / `state(key)` (initializer names of the
    layer's arrays), `constant(array)` (a new initializer) and `node(op, inputs, **attributes)`
    (adds a node, returns its output's name; several with outputs=n). Nodes are named after the
    layer's position, e.g. "3.conv2d/Conv". A layer built of layers exports them with
    `sublayers(layers, params, state, x, shape, where)` from its `layer_params`/`layer_state`."""

    def __init__(self, builder, spec, x: str, shape: tuple, where: str, params, state):
        self._b, self.spec, self.x, self.shape, self.where = builder, spec, x, tuple(shape), where
        self.layer_params, self.layer_state = params, state  # the layer's own trees
        self.dtype = builder.dtype

    def param(self, key: str) -> str:
        return self._b.initializer(f"params/{self.where}/{key}", self.layer_params[key])

    def state(self, key: str) -> str:
        return self._b.initializer(f"state/{self.where}/{key}", self.layer_state[key])

    def constant(self, value, name: str, dtype=None) -> str:
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        return self._b.initializer(f"const/{self.where}/{name}", array)

    def node(self, op: str, inputs, *, outputs: int = 1, domain: str = "", **attributes):
        names = self._b.node(op, list(inputs), outputs, domain, self, attributes)
        return names[0] if outputs == 1 else names

    def sublayers(self, layers, params, state, x: str, shape: tuple, where: str) -> str:
        """Export a sequence of layers (a block's branch) from tensor x; returns its output."""
        return self._b.serial(layers, params, state, x, shape, where)


class LoadContext:
    """What a loader sees: `shape` (the per-sample shape of the node's input), `dtype`,
    `attrs(node)` (its attributes as Python values), `const(name)` (an initializer or Constant's
    array, or a failure naming the node), `is_const(name)`, `follow(tensor, ops, when=None)` (the
    node that alone consumes `tensor`, when its op is one of `ops`, `when(node)` holds and the
    tensor is no block's end: it is taken as part of this layer), `unused(node, k)` (a failure unless outputs k.. of the node feed nothing) and
    `fail(node, what)` (the error to raise)."""

    def __init__(self, reader, shape: tuple, end: str | None):
        self._r, self.shape, self._end = reader, tuple(shape), end
        self.dtype = reader.dtype

    def attrs(self, node) -> dict:
        return self._r.attrs(node)

    def const(self, name: str, node=None) -> np.ndarray:
        return self._r.const(name, node)

    def has_input(self, node, i: int) -> bool:
        return len(node.input) > i and node.input[i] != ""

    def follow(self, tensor: str, ops, when=None) -> Any:
        return self._r.follow(tensor, tuple(ops), self._end, when)

    def is_const(self, name: str) -> bool:
        return self._r.is_const(name)

    def unused(self, node, first: int) -> None:
        self._r.unused(node, first)

    def fail(self, node, what: str) -> OnnxError:
        return self._r.fail(f"node {node.name!r} ({node.op_type}): {what}")
