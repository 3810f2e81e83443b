"""fran Model -> ONNX ModelProto: one node pattern per layer kind (fran/onnx/_builtins.py), a
dynamic batch axis named "N", the model's dtype, and the network in the file's metadata.

Opset 17, because: every op fran writes is at its current form there (Conv/ConvTranspose 11,
MaxPool 12, Gemm/Softmax/Flatten/Dropout 13, BatchNormalization 15); LayerNormalization, which
sequence layers will need, first appears in 17; ONNX Runtime has run opset 17 since 1.12 and the
installed onnx 1.23 and onnxruntime 1.32 read it, and it is torch.onnx.export's default
in the TorchScript exporter, so fran's files and PyTorch's look alike. Opset 18 only moved the
Reduce* ops' axes to inputs (fran writes none).

The metadata (metadata_props) holds "fran.format", "fran.version", "fran.network" (the layer
specs as fran.io encodes them in a model file: {"layers": [{"layer": name, "args": {...}}, ...],
"epoch", "step"}), "fran.input_shape", "fran.seed" and "fran.dtype"; every node is named after
its layer's position and kind ("3.dense/Gemm") and a layer's first node's doc_string is its spec.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import fran
from fran import engine, io, registry
from fran.model import Model
from fran.onnx import _builtins  # noqa: F401  (registers the built-in layers' mappings)
from fran.onnx._errors import OnnxError
from fran.onnx._plugins import ExportContext, mapping_for

OPSET = 17
IR_VERSION = 8  # the IR of opset 17 (onnx.helper.VERSION_TABLE): older runtimes read it
FORMAT = "fran.onnx/1"
INPUT, OUTPUT = "input", "output"


class _Builder:
    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.nodes: list = []
        self.inits: dict = {}
        self.names: set = set()
        self.domains: set = set()
        self._documented: set = set()

    def initializer(self, name: str, array) -> str:
        if name not in self.inits:
            array = np.asarray(array, order="C")  # (ascontiguousarray would make a scalar 1-D)
            self.inits[name] = numpy_helper.from_array(array, name)
        return name

    def node(self, op, inputs, outputs, domain, ctx, attributes) -> list[str]:
        base = f"{ctx.where}.{registry.rules_for(ctx.spec).name}/{op}"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        outs = [name] if outputs == 1 else [f"{name}.{j}" for j in range(outputs)]
        doc = None
        if ctx.where not in self._documented:  # the layer's first node carries its spec
            self._documented.add(ctx.where)
            doc = repr(ctx.spec)
        self.nodes.append(
            helper.make_node(
                op, inputs, outs, name=name, doc_string=doc, domain=domain or None, **attributes
            )
        )
        if domain:
            self.domains.add(domain)
        return outs

    def serial(self, layers, params, state, x: str, shape: tuple, where: str) -> str:
        for i, (layer, p, s) in enumerate(zip(layers, params, state, strict=True)):
            at = f"{where}/{i}" if where else str(i)
            ctx = ExportContext(self, layer, x, shape, at, p, s)
            x = mapping_for(layer).export(layer, ctx)
            shape = engine.output_shape(layer, shape)
        return x


def _metadata(model: Model) -> dict[str, str]:
    layers = [io.encode_spec(layer, f"layer {i}") for i, layer in enumerate(model.spec.layers)]
    dtype = model.dtype
    return {
        "fran.format": FORMAT,
        "fran.version": fran.__version__,
        "fran.network": json.dumps({"layers": layers, "epoch": model.epoch, "step": model.step}),
        "fran.input_shape": json.dumps([int(n) for n in model.input_shape]),
        "fran.seed": str(int(model.seed)),
        "fran.dtype": dtype.name,
    }


def to_model_proto(model: Model, *, check: bool = True) -> onnx.ModelProto:
    """The ONNX ModelProto of `model` (what `export` writes), checked by onnx.checker with full
    checking (shape inference included) unless check=False."""
    if not isinstance(model, Model):
        raise TypeError(f"fran.onnx.export: model must be a fran Model, got {type(model).__name__}")
    dtype = model.dtype
    try:
        elem = helper.np_dtype_to_tensor_dtype(dtype)
    except (KeyError, TypeError, ValueError):
        raise OnnxError(f"fran.onnx.export: the model's dtype {dtype} has no ONNX type") from None
    b = _Builder(dtype)
    try:
        out = b.serial(model.spec.layers, model.params, model.state, INPUT, model.input_shape, "")
    except OnnxError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise OnnxError(f"fran.onnx.export: {type(exc).__name__}: {exc}") from exc
    for node in b.nodes:  # the last layer's output is the graph's "output"
        node.output[:] = [OUTPUT if o == out else o for o in node.output]
    out_shape = engine.output_shape(model.spec, model.input_shape)
    graph = helper.make_graph(
        b.nodes,
        "fran network",
        [helper.make_tensor_value_info(INPUT, elem, ["N", *model.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["N", *out_shape])],
        initializer=list(b.inits.values()),
        doc_string=f"fran {fran.__version__}: {model.spec.layers!r}",
    )
    opsets = [helper.make_opsetid("", OPSET)]
    opsets += [helper.make_opsetid(d, 1) for d in sorted(b.domains)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=IR_VERSION,
        producer_name="fran",
        producer_version=fran.__version__,
    )
    helper.set_model_props(proto, _metadata(model))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:  # a mapping's bug: never write a file the checker refuses
            raise OnnxError(f"fran.onnx.export: onnx.checker refuses the graph: {exc}") from exc
    return proto


def export(model: Model, path) -> Path:
    """Write `model` as an ONNX file (opset 17, batch axis "N" dynamic), atomically.

    Args:
        model: a fran Model of built-in layers or plugin layers with an ONNX mapping.
        path: the .onnx file to write (its folder must exist).
    Returns:
        The path written.
    Raises:
        OnnxError: a layer or activation without an ONNX form (named), or a model over 2 GiB.
        fran.SaveError: the file could not be written (the old one, if any, is intact).
    """
    proto = to_model_proto(model)
    try:
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit
        raise OnnxError(f"fran.onnx.export: the model cannot be serialised: {exc}") from None
    path = Path(path)
    io.atomic_write(path, lambda fh: fh.write(data), caller="fran.onnx.export")
    return path
