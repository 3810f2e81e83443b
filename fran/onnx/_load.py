"""ONNX file -> fran Model: checked as data from outside, then matched node by node to layers.

Reading refuses, before any tensor is converted and with an OnnxError naming the file: a file over
MAX_FILE_BYTES; bytes that are not an ONNX ModelProto; an opset below 13 or newer than the
installed onnx; functions, sparse tensors, training info and subgraphs (If, Loop, Scan...); more
than MAX_NODES nodes; an op no layer reads (listing those that are read); a tensor of a dtype fran
does not use, of more than MAX_TENSOR_ELEMENTS elements, or whose data is not exactly the
elements its dims declare; external data outside the file's folder (a path that is absolute,
climbs out with "..", or is a link leading out), or past the end of its file; a graph whose
tensors come from nowhere, are written twice, or form a cycle; residual blocks nested more
than MAX_NESTING deep; a fran metadata JSON over fran.io's META_MAX_BYTES or META_MAX_DEPTH.

Matching. From the graph's one input to its one output, each node is read by the loaders
registered for its op (fran/onnx/_builtins.py, plugins): Conv, then an activation that alone
follows it, is one conv2d(activation=...). A tensor feeding two nodes is a residual block's fork:
its join is the first node both branches reach, which must be an Add of the two branches' ends
(or of one branch's end and the fork's tensor itself: the identity shortcut). Every node must be
on that path; anything else is an error naming the node, its op and what fran lacks.

A file written by fran.onnx.export (its "fran.*" metadata) comes back as exactly the saved model
(the specs, their params bitwise, state, input shape, seed, counters) when its graph is exactly
the one fran writes for that model; otherwise (an edited file) it is matched like any other.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from fran import engine, io, registry
from fran.model import Model
from fran.onnx import _builtins, _export
from fran.onnx._errors import OnnxError
from fran.onnx._plugins import LoadContext, known_ops, loaders_for
from fran.tree import freeze, tree_items, tree_leaves, tree_map

MAX_FILE_BYTES = 2**31 - 1  # protobuf's own limit for one message
MAX_NODES = 10_000
MAX_NESTING = 64  # residual blocks inside residual blocks
MAX_TENSOR_ELEMENTS = 2**28  # one initializer (1 GiB of float32)
MIN_OPSET = 13
STRUCTURAL = {("", "Add"), ("", "Constant")}  # read by the walk itself
DTYPES = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.FLOAT16: np.float16,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.BOOL: np.bool_,
}
TYPED_FIELD = {
    TensorProto.FLOAT: "float_data",
    TensorProto.DOUBLE: "double_data",
    TensorProto.FLOAT16: "int32_data",
    TensorProto.INT64: "int64_data",
    TensorProto.INT32: "int32_data",
    TensorProto.BOOL: "int32_data",
}


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


class _Reader:
    def __init__(self, path: Path, proto: onnx.ModelProto, size: int):
        self.path, self.proto, self.size = path, proto, size
        self.graph = proto.graph
        self._arrays: dict = {}
        self.visited: set = set()

    def fail(self, what: str) -> OnnxError:
        return OnnxError(f"fran.onnx.load: {self.path}: {what}")

    # ------------------------------------------------------------ the cheap structural checks

    def check_structure(self) -> None:
        p, g = self.proto, self.graph
        opsets = {o.domain if o.domain != "ai.onnx" else "": o.version for o in p.opset_import}
        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= opsets.get("", 0) <= newest:
            raise self.fail(
                f"ONNX opset {opsets.get('', 'missing')}: fran reads opsets {MIN_OPSET} to {newest}"
            )
        for what, items in (
            ("functions", p.functions),
            ("training info", p.training_info),
            ("sparse initializers", g.sparse_initializer),
        ):
            if len(items):
                raise self.fail(f"the file has {what}, which fran does not read")
        if len(g.node) > MAX_NODES:
            raise self.fail(f"{len(g.node):,} nodes, more than MAX_NODES = {MAX_NODES:,}")
        # fran's own files may hold the ops its sequence layers write: fran_model reads those
        # files from their metadata (and checks the graph); the walk never matches such a node
        fran_file = any(
            m.key == "fran.format" and m.value == _export.FORMAT for m in p.metadata_props
        )
        for node in g.node:
            for a in node.attribute:
                if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) or a.g.node:
                    raise self.fail(
                        f"node {node.name!r} ({node.op_type}) has a subgraph (attribute {a.name!r}); "
                        f"fran reads no control flow"
                    )
            key = (_domain(node), node.op_type)
            if fran_file and not key[0] and key[1] in _builtins.WRITTEN_ONLY:
                continue
            if key not in STRUCTURAL and not loaders_for(*key):
                raise self.fail(
                    f"node {node.name!r}: op {node.op_type!r}"
                    f"{' of domain ' + repr(node.domain) if key[0] else ''} has no fran layer; "
                    f"fran reads {', '.join(known_ops() + ['Add (residual joins)', 'Constant'])}"
                )

    def check_tensors(self) -> None:
        """Every initializer and Constant: its dtype, its size, its data's presence (unread)."""
        self.tensors: dict = {}
        for t in self.graph.initializer:
            self._check_tensor(t, f"initializer {t.name!r}")
            self.tensors[t.name] = t
        for node in self.graph.node:
            if node.op_type != "Constant" or _domain(node):
                continue
            if len(node.output) != 1 or len(node.attribute) != 1:
                raise self.fail(f"Constant node {node.name!r} must have one output and one value")
            a = node.attribute[0]
            if a.name == "value":
                self._check_tensor(a.t, f"Constant node {node.name!r}")
                self.tensors[node.output[0]] = a.t
            elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                if len(a.floats) + len(a.ints) > MAX_TENSOR_ELEMENTS:
                    raise self.fail(f"Constant node {node.name!r} is too large")
                self._arrays[node.output[0]] = np.asarray(helper.get_attribute_value(a))
            else:
                raise self.fail(f"Constant node {node.name!r}: fran reads no {a.name!r} constants")

    def _check_tensor(self, t, what: str) -> None:
        if t.data_type not in DTYPES:
            name = (
                TensorProto.DataType.Name(t.data_type)
                if t.data_type in TensorProto.DataType.values()
                else t.data_type
            )
            raise self.fail(
                f"{what} has data type {name}; fran reads float, double, float16 and ints"
            )
        if len(t.dims) > 8 or any(d < 0 for d in t.dims):
            raise self.fail(f"{what} declares dims {list(t.dims)}")
        n = math.prod(t.dims)
        if n > MAX_TENSOR_ELEMENTS:
            raise self.fail(
                f"{what} declares {n:,} elements (dims {list(t.dims)}), over MAX_TENSOR_ELEMENTS = "
                f"{MAX_TENSOR_ELEMENTS:,}"
            )
        nbytes = n * np.dtype(DTYPES[t.data_type]).itemsize
        if t.data_location == TensorProto.EXTERNAL:
            self._check_external(t, what, nbytes)
            return
        if t.HasField("raw_data"):
            if len(t.raw_data) != nbytes:
                raise self.fail(
                    f"{what} declares dims {list(t.dims)} ({nbytes:,} bytes) but holds "
                    f"{len(t.raw_data):,} bytes"
                )
        else:
            held = len(getattr(t, TYPED_FIELD[t.data_type]))
            if held != n:
                raise self.fail(f"{what} declares {n:,} elements but holds {held:,}")

    def _check_external(self, t, what: str, nbytes: int) -> None:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        folder = self.path.resolve().parent
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise self.fail(
                f"{what} keeps its data in {location!r}, outside the file's folder {folder}; fran "
                f"reads external data only from files beside the model"
            )
        try:
            offset = int(info.get("offset", 0))
            length = int(info.get("length", nbytes))
            size = target.stat().st_size
        except (ValueError, OSError) as exc:
            raise self.fail(
                f"{what}: its external data {location!r} is unreadable: {exc}"
            ) from None
        if length != nbytes or offset < 0 or offset + length > size:
            raise self.fail(
                f"{what} declares {nbytes:,} bytes at offset {offset:,} of {location!r} "
                f"(length {length:,}; the file has {size:,})"
            )
        self._arrays.setdefault(("external", t.name), (target, offset, length))

    def check_wiring(self) -> None:
        """One input, one output, every tensor produced once and from somewhere, no cycle."""
        g = self.graph
        inputs = [v for v in g.input if v.name not in self.tensors]
        if len(inputs) != 1 or len(g.output) != 1:
            raise self.fail(
                f"{len(inputs)} inputs and {len(g.output)} outputs; fran's networks have one of each"
            )
        self.input, self.output = inputs[0].name, g.output[0].name
        self.producer: dict = {}
        known = {self.input} | set(self.tensors) | {k for k in self._arrays if isinstance(k, str)}
        nodes = [n for n in g.node if n.op_type != "Constant" or _domain(n)]
        for i, node in enumerate(nodes):
            for out in node.output:
                if out and (out in self.producer or out in known):
                    raise self.fail(f"tensor {out!r} is written twice (node {node.name!r})")
                if out:
                    self.producer[out] = i
        self.consumers: dict = {}
        for i, node in enumerate(nodes):
            for inp in node.input:
                if inp and inp not in self.producer and inp not in known:
                    raise self.fail(f"node {node.name!r} reads {inp!r}, which nothing writes")
                users = (
                    self.consumers.setdefault(inp, []) if inp not in known - {self.input} else []
                )
                if inp and i not in users:  # a node reading a tensor twice is one consumer
                    users.append(i)
        self.nodes = nodes
        # Kahn's topological order: what is left over lies on a cycle
        indegree = [len({self.producer[x] for x in n.input if x in self.producer}) for n in nodes]
        order, ready = [], [i for i, d in enumerate(indegree) if d == 0]
        while ready:
            i = ready.pop()
            order.append(i)
            for out in nodes[i].output:
                for j in set(self.consumers.get(out, ())):
                    indegree[j] -= 1
                    if indegree[j] == 0:
                        ready.append(j)
        if len(order) != len(nodes):
            stuck = next(nodes[i].name for i, d in enumerate(indegree) if d > 0)
            raise self.fail(f"the graph has a cycle (through node {stuck!r})")
        self.rank = {i: r for r, i in enumerate(order)}
        if self.output not in self.producer:
            raise self.fail(f"the output {self.output!r} is not written by any node")

    def input_spec(self) -> tuple[np.dtype, tuple]:
        v = next(v for v in self.graph.input if v.name == self.input)
        if not v.type.HasField("tensor_type"):
            raise self.fail(f"input {self.input!r} is not a tensor")
        tt = v.type.tensor_type
        if tt.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            raise self.fail(f"input {self.input!r} has element type {tt.elem_type}, not a float")
        dims = list(tt.shape.dim)
        sample = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
        if not dims or any(n < 1 for n in sample) or math.prod(sample) > MAX_TENSOR_ELEMENTS:
            raise self.fail(
                f"input {self.input!r} has shape {[d.dim_param or d.dim_value for d in dims]}; "
                f"fran needs (N, sample...) with every sample axis a fixed size"
            )
        return np.dtype(DTYPES[tt.elem_type]), sample

    # ------------------------------------------------------------ tensors as arrays

    def _alias(self, name: str):
        """The Identity node copying a constant into `name` (torch shares equal initializers
        so), or None."""
        i = self.producer.get(name)
        node = None if i is None else self.nodes[i]
        if node is not None and node.op_type == "Identity" and not _domain(node):
            if node.input[0] in self.tensors or node.input[0] in self._arrays:
                return i
        return None

    def is_const(self, name: str) -> bool:
        return name in self.tensors or name in self._arrays or self._alias(name) is not None

    def const(self, name: str, node=None) -> np.ndarray:
        if name in self._arrays:
            return self._arrays[name]
        alias = self._alias(name)
        if alias is not None:
            self.visited.add(alias)
            return self.const(self.nodes[alias].input[0], node)
        t = self.tensors.get(name)
        if t is None:
            where = f"node {node.name!r} ({node.op_type}): " if node is not None else ""
            raise self.fail(
                f"{where}input {name!r} must be a constant (an initializer), not computed"
            )
        dtype = np.dtype(DTYPES[t.data_type])
        if t.data_location == TensorProto.EXTERNAL:
            target, offset, length = self._arrays[("external", t.name)]
            with open(target, "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
            if len(data) != length:
                raise self.fail(f"tensor {name!r}: its external data is truncated")
            array = np.frombuffer(data, dtype.newbyteorder("<")).reshape(tuple(t.dims))
        else:
            array = onnx.numpy_helper.to_array(t)
        array = np.array(array, dtype=dtype, order="C")  # a copy of its own, a scalar kept 0-D
        self._arrays[name] = array
        return array

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            if a.name in out:
                raise self.fail(f"node {node.name!r} has attribute {a.name!r} twice")
            value = helper.get_attribute_value(a)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            out[a.name] = list(value) if isinstance(value, (list, tuple)) else value
        return out

    # ------------------------------------------------------------ the walk

    def follow(self, tensor: str, ops: tuple, end, when=None):
        cons = self.consumers.get(tensor, [])
        if tensor in (end, self.output) or len(cons) != 1:
            return None
        node = self.nodes[cons[0]]
        if node.op_type not in ops or _domain(node) or (when is not None and not when(node)):
            return None
        self.visit(cons[0])
        return node

    def unused(self, node, first: int) -> None:
        for out in node.output[first:]:
            if out and (self.consumers.get(out) or out == self.output):
                raise self.fail(
                    f"node {node.name!r} ({node.op_type}): its output {out!r} is used; fran "
                    f"computes only the first"
                )

    def visit(self, i: int) -> None:
        if i in self.visited:
            raise self.fail(f"node {self.nodes[i].name!r} is reached twice")
        self.visited.add(i)

    def match(self, i: int, shape: tuple, end):
        node = self.nodes[i]
        ctx = LoadContext(self, shape, end)
        for mapping in loaders_for(_domain(node), node.op_type):
            found = mapping.load(node, ctx)
            if found is not None:
                return found
        if not _domain(node) and node.op_type in _builtins.WRITTEN_ONLY:
            raise self.fail(
                f"node {node.name!r} ({node.op_type}): fran reads this op only in the files it "
                f"writes itself, unedited (its sequence layers' forms)"
            )
        raise self.fail(f"node {node.name!r} ({node.op_type}): no fran layer reads it here")

    def chain(self, t: str, end: str, shape: tuple, depth: int, allowed: set | None = None):
        """The layers from tensor t to tensor end, [(spec, params, state)], and the out shape.
        Inside a residual branch only its own nodes (`allowed`) may read t; any other tensor of
        the branch must be read by nodes of the branch alone (or be its end, read by the join)."""
        layers, start = [], t
        while t != end:
            if t == self.output:
                raise self.fail(f"the output {t!r} is reached inside a block")
            cons = self.consumers.get(t, [])
            if allowed is not None:
                inside = [i for i in cons if i in allowed]
                if t != start and len(inside) != len(cons):
                    raise self.fail(
                        f"tensor {t!r} inside a residual branch is also read outside it (nodes "
                        f"{[self.nodes[i].name for i in cons if i not in allowed]})"
                    )
                cons = inside
            if not cons:
                raise self.fail(f"tensor {t!r} feeds nothing: the path ends before the output")
            if len(cons) > 1:
                layer, t = self.block(t, cons, shape, depth, allowed)
                shape = self.shape_after(layer[0], shape, None)
                layers.append(layer)
                continue
            i = cons[0]
            node = self.nodes[i]
            if node.op_type == "Add" and not _domain(node):
                raise self.fail(
                    f"node {node.name!r} (Add) is not a residual block's join; fran adds tensors "
                    f"only there"
                )
            self.visit(i)
            spec, params, state, t = self.match(i, shape, end)
            if spec is not None:
                shape = self.shape_after(spec, shape, node)
                layers.append((spec, params, state))
        return layers, shape

    def shape_after(self, spec, shape, node) -> tuple:
        try:
            return engine.output_shape(spec, shape)
        except ValueError as exc:
            where = f"node {node.name!r} ({node.op_type}): " if node is not None else ""
            raise self.fail(
                f"{where}{spec!r} cannot take samples of shape {shape}: {exc}"
            ) from None

    def reach(self, i: int, allowed) -> set:
        """Node i and every node downstream of it (within `allowed`)."""
        seen, stack = set(), [i]
        while stack:
            j = stack.pop()
            if j not in seen and (allowed is None or j in allowed):
                seen.add(j)
                for out in self.nodes[j].output:
                    stack.extend(self.consumers.get(out, ()))
        return seen

    def ancestors(self, tensor: str) -> set:
        """The nodes upstream of tensor (its producer included)."""
        seen, stack = set(), [tensor]
        while stack:
            i = self.producer.get(stack.pop())
            if i is not None and i not in seen:
                seen.add(i)
                stack.extend(self.nodes[i].input)
        return seen

    def block(self, t: str, cons: list, shape: tuple, depth: int, allowed):
        """The residual block forking at tensor t (read by the nodes cons): its join is the first
        node every one of them reaches, an Add whose two inputs end the two branches."""
        if depth >= MAX_NESTING:
            raise self.fail(f"residual blocks nest more than MAX_NESTING = {MAX_NESTING} deep")
        names = [self.nodes[i].name for i in cons]
        reaches = [self.reach(i, allowed) for i in cons]
        common = set.intersection(*reaches)
        if not common:
            raise self.fail(f"the branches from tensor {t!r} (nodes {names}) never join")
        j = min(common, key=self.rank.__getitem__)
        join = self.nodes[j]
        if (
            join.op_type != "Add"
            or _domain(join)
            or len(join.input) != 2
            or len(set(join.input)) != 2
        ):
            raise self.fail(
                f"the branches from tensor {t!r} (nodes {names}) join at node {join.name!r} "
                f"({join.op_type}); fran joins a residual block's two branches only with an Add"
            )
        downstream = set.union(*reaches) - {j}
        branches, taken = [], set()
        for slot, x in enumerate(join.input):
            if x == t:
                branches.append((slot, [], shape))
                continue
            nodes = self.ancestors(x) & downstream
            if not nodes or nodes & taken:
                raise self.fail(f"the branches from tensor {t!r} cross before node {join.name!r}")
            taken |= nodes
            layers, out = self.chain(t, x, shape, depth + 1, nodes)
            branches.append((slot, layers, out))
        if taken != downstream & self.ancestors(join.output[0]):
            raise self.fail(f"a branch from tensor {t!r} does not end at node {join.name!r}")
        self.visit(j)
        branches.sort(key=lambda b: not b[1])  # a branch of no layers (Identity) is the shortcut
        (_, f, _), (_, g, _) = branches
        if not f:
            raise self.fail(f"both branches from tensor {t!r} to node {join.name!r} are empty")
        spec = registry.get("residual")([s for s, _, _ in f], shortcut=[s for s, _, _ in g] or None)
        params = {"f": tuple(p for _, p, _ in f)}
        state = {"f": tuple(s for _, _, s in f)}
        if g:
            params["g"], state["g"] = tuple(p for _, p, _ in g), tuple(s for _, _, s in g)
        return (spec, params, state), join.output[0]

    def walk(self, dtype, shape) -> Model:
        self.dtype = dtype
        layers, out = self.chain(self.input, self.output, shape, 0)
        left = [self.nodes[i] for i in range(len(self.nodes)) if i not in self.visited]
        if left:
            raise self.fail(
                f"node {left[0].name!r} ({left[0].op_type}) is not on the path from the input to "
                f"the output; fran would compute without it"
            )
        if not layers:  # Identity nodes only
            layers = [(registry.get("activation")("identity"), {}, {})]
        spec = engine.network([s for s, _, _ in layers])
        params = tuple(p for _, p, _ in layers)
        state = tuple(s for _, _, s in layers)
        self.check_like(spec, shape, params, state, dtype)
        return Model(
            spec=spec,
            params=_frozen(params),
            input_shape=shape,
            dtype=dtype,
            state=_frozen(state),
        )

    def check_like(self, spec, shape, params, state, dtype) -> None:
        """params and state have exactly the paths and shapes fran's init gives this network."""
        like = engine.serial_param_shapes(spec.layers, shape)
        for what, got, want in (
            ("params", params, like),
            ("state", state, engine.serial_state_shapes(spec.layers, shape)),
        ):
            a = [(p, np.shape(v)) for p, v in tree_items(got)]
            b = [(p, np.shape(v)) for p, v in tree_items(want)]
            if a != b:
                raise self.fail(f"the {what} read {a} are not those of {spec.layers!r}: {b}")
            for p, v in tree_items(got):
                if np.asarray(v).dtype != dtype:
                    raise self.fail(f"{what} {p} is {np.asarray(v).dtype}, the model {dtype}")

    # ------------------------------------------------------------ fran's own files

    def fran_model(self, dtype, shape) -> Model | None:
        """The model a fran file's metadata describes, if its graph is exactly fran's for it."""
        meta = {p.key: p.value for p in self.proto.metadata_props}
        if meta.get("fran.format") != _export.FORMAT:
            return None
        try:
            text = meta["fran.network"]
            if len(text) > io.META_MAX_BYTES:
                raise ValueError(f"{len(text):,} characters, over META_MAX_BYTES")
            net = json.loads(text)
            if io.json_depth(net) > io.META_MAX_DEPTH:
                raise ValueError(f"nested over META_MAX_DEPTH = {io.META_MAX_DEPTH}")
            specs = [io.decode_spec(e, f"layer {i}") for i, e in enumerate(net["layers"])]
            spec = engine.network(specs, net["epoch"], net["step"])
            input_shape = tuple(json.loads(meta["fran.input_shape"]))
            seed = int(meta["fran.seed"])
            if input_shape != shape or meta["fran.dtype"] != dtype.name:
                raise ValueError("its input shape or dtype is not the graph input's")
            like = list(engine.serial_param_shapes(spec.layers, shape))
        except (KeyError, TypeError, ValueError, io.CheckpointError, RecursionError) as exc:
            raise self.fail(f"its fran metadata is invalid: {type(exc).__name__}: {exc}") from None
        need = sum(np.size(v) for v in tree_leaves(like)) * dtype.itemsize
        if need > self.size:
            raise self.fail(f"its fran metadata implies {need:,} bytes of params in a smaller file")
        state_like = engine.serial_state_shapes(spec.layers, shape)
        try:
            params = _fill(self, "params", like, dtype)
            state = _fill(self, "state", state_like, dtype)
        except KeyError:
            return None  # not fran's names: an edited file
        model = Model(
            spec=spec,
            params=_frozen(params),
            input_shape=shape,
            seed=seed,
            dtype=dtype,
            state=_frozen(state),
        )
        try:
            again = _export.to_model_proto(model, check=False)
        except OnnxError:
            return None
        return model if _same_graph(self.proto.graph, again.graph, self) else None


def _fill(reader: _Reader, prefix: str, like, dtype):
    """The tree `like` with each leaf read from the initializer named prefix/path (KeyError if
    one is missing or of another shape or dtype: then the file is not fran's as written)."""

    def leaf(path: str, shape: tuple):
        name = f"{prefix}/{path}"
        if name not in reader.tensors:
            raise KeyError(name)
        array = reader.const(name)
        if array.shape != tuple(shape) or array.dtype != dtype:
            raise KeyError(name)
        return array

    values = iter([leaf(p, np.shape(v)) for p, v in tree_items(like)])
    return tree_map(lambda _: next(values), like)


def _same_graph(a, b, reader: _Reader) -> bool:
    if [n.SerializeToString() for n in a.node] != [n.SerializeToString() for n in b.node]:
        return False
    if [v.SerializeToString() for v in (*a.input, *a.output)] != [
        v.SerializeToString() for v in (*b.input, *b.output)
    ]:
        return False
    if sorted(t.name for t in a.initializer) != sorted(t.name for t in b.initializer):
        return False
    for t in b.initializer:
        mine = reader.const(t.name)
        theirs = onnx.numpy_helper.to_array(t)
        if (
            mine.dtype != theirs.dtype
            or mine.shape != theirs.shape
            or mine.tobytes() != theirs.tobytes()
        ):
            return False
    return True


def _frozen(tree):
    return freeze(tree_map(lambda a: np.array(a), tree))


def _parse(path: Path) -> tuple[onnx.ModelProto, int]:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise OnnxError(f"fran.onnx.load: {path}: cannot be read: {exc}") from None
    if not path.is_file():
        raise OnnxError(f"fran.onnx.load: {path}: not a regular file")
    if size > MAX_FILE_BYTES:
        raise OnnxError(
            f"fran.onnx.load: {path}: {size:,} bytes, over MAX_FILE_BYTES = {MAX_FILE_BYTES:,}"
        )
    with open(path, "rb") as fh:  # read(n) allocates n bytes first: ask for what stat said
        data = fh.read(size + 1)
    if len(data) > size:  # it grew since stat: read no more than the cap, refuse past it
        raise OnnxError(f"fran.onnx.load: {path}: changed while being read")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, or its recursion limit
        raise OnnxError(
            f"fran.onnx.load: {path}: not an ONNX model file: {type(exc).__name__}: {exc}"
        ) from None
    if not proto.HasField("graph"):
        raise OnnxError(f"fran.onnx.load: {path}: not an ONNX model file (no graph)")
    return proto, len(data)


def load(path) -> Model:
    """A fran Model from an ONNX file: one written by fran.onnx.export (exactly the model saved),
    or by another exporter (torch.onnx.export) when each of its nodes is a fran layer.

    Args:
        path: the .onnx file. External data is read only from files in its folder.
    Returns:
        The Model (params and state read-only, no optimizer state): predict, evaluate_nn and
        train_nn take it as any other.
    Raises:
        FileNotFoundError: no such file.
        OnnxError: the file is not ONNX, is hostile, or holds an op, attribute or structure fran
            cannot express (the message names the node, its op and what is missing).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"fran.onnx.load: path must be a str or os.PathLike, got {type(path).__name__}"
        )
    path = Path(path)
    proto, size = _parse(path)
    reader = _Reader(path, proto, size)
    try:
        reader.check_structure()
        reader.check_tensors()
        reader.check_wiring()
        dtype, shape = reader.input_spec()
        model = reader.fran_model(dtype, shape)
        if model is not None:
            return model
        return reader.walk(dtype, shape)
    except OnnxError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError, RecursionError) as exc:  # fmt: skip
        raise reader.fail(f"cannot be read: {type(exc).__name__}: {exc}") from exc
