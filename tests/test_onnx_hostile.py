"""Hostile ONNX files are refused cheaply, with an OnnxError naming the file and the problem.

Each file is built with onnx.helper (or edited from a valid export): tensors declaring 10**12
elements over a few bytes, data that is not what its dims declare, external data outside the
file's folder (a "../" path, an absolute one, a link leading out) or past its file's end, cycles,
10,001 nodes, residual blocks nested 70 deep, subgraphs, functions, foreign opsets and dtypes,
fran metadata that is too deep or implies more params than the file holds, and files over
MAX_FILE_BYTES (refused before a byte is read). Then a hypothesis fuzz mutates a valid file (a CNN,
or a network of every sequence layer, whose ops fran reads only in its own files) at the
byte and the graph level: load either returns a model that predicts, or raises OnnxError.
"""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import fran  # noqa: E402
import fran.onnx  # noqa: E402
from fran import batchnorm, conv2d, dense, flatten, maxpooling, network, residual  # noqa: E402
from fran.onnx import OnnxError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def small_model(dtype=np.float32):
    net = network(
        [
            conv2d(k=3, channels=2, padding=1, activation="relu"),
            residual([conv2d(k=3, channels=2, padding=1), batchnorm()]),
            maxpooling(k=2),
            flatten(),
            dense(3, activation="tanh"),
        ]
    )
    return fran.init_weights(net, 6, 6, dtype=dtype)


def proto_of(model=None):
    return fran.onnx.to_model_proto(small_model() if model is None else model)


def save(tmp_path, proto, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def refused(path, match):
    tracemalloc.start()
    try:
        with pytest.raises(OnnxError, match=match) as info:
            fran.onnx.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    # cheap: nothing large was read or allocated (a byte count, not a wall clock, so that a
    # loaded machine cannot fail it; NumPy reports its buffers to tracemalloc)
    assert peak < 32 * 2**20, peak
    return info.value


def raw_tensor(name, dims, data: bytes):
    """A float tensor whose dims say anything, over whatever bytes (helper.make_tensor checks)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = data
    return t


def graph(nodes, inits=(), opset=17, shape=(4,)):
    dt = TensorProto.FLOAT
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", dt, ["N", *shape])],
        [helper.make_tensor_value_info("output", dt, None)], initializer=list(inits),
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


# ---------------------------------------------------------------- declared sizes


def test_huge_declared_tensor_is_refused_unread(tmp_path):
    t = raw_tensor("w", [10**6, 10**6], b"\0\0\0\0")
    proto = graph([helper.make_node("Gemm", ["input", "w"], ["output"])], [t])
    refused(save(tmp_path, proto), r"initializer 'w' declares 1,000,000,000,000 elements")


def test_tensor_holding_other_than_its_dims_is_refused(tmp_path):
    t = raw_tensor("w", [4, 1000], b"\0" * 16)
    proto = graph([helper.make_node("Gemm", ["input", "w"], ["output"])], [t])
    refused(
        save(tmp_path, proto),
        r"initializer 'w' declares dims \[4, 1000\] \(16,000 bytes\) but holds 16",
    )
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2], float_data=[1.0, 2.0])
    proto = graph([helper.make_node("Gemm", ["input", "w"], ["output"])], [t])
    refused(save(tmp_path, proto), r"initializer 'w' declares 8 elements but holds 2")


def test_foreign_dtype_is_refused(tmp_path):
    t = helper.make_tensor("w", TensorProto.STRING, [1], [b"x"])
    proto = graph([helper.make_node("Gemm", ["input", "w"], ["output"])], [t])
    refused(save(tmp_path, proto), r"initializer 'w' has data type STRING")


def test_file_over_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    path = save(tmp_path, proto_of())
    monkeypatch.setattr(fran.onnx._load, "MAX_FILE_BYTES", 100)
    refused(path, r"bytes, over MAX_FILE_BYTES = 100")


@pytest.mark.parametrize("data", [b"", b"\x08\x07garbage\xff\xff\xff", os.urandom(64)])
def test_not_onnx_is_refused(tmp_path, data):
    path = tmp_path / "junk.onnx"
    path.write_bytes(data)
    refused(path, "not an ONNX model file")


# ---------------------------------------------------------------- external data


def external(tmp_path, location, offset=0, length=None):
    proto = proto_of()
    t = proto.graph.initializer[0]
    nbytes = len(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length or nbytes)):
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return save(folder, proto), t.name, nbytes


def test_external_data_beside_the_file_loads(tmp_path):
    model = small_model()
    folder = tmp_path / "beside"
    folder.mkdir()
    proto = fran.onnx.to_model_proto(model)
    onnx.save(
        proto, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    assert (folder / "w.bin").stat().st_size > 0
    assert fran.onnx.load(folder / "m.onnx") == model


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    path, name, _ = external(tmp_path, location)
    refused(path, rf"initializer '{name}' keeps its data in .*outside the file's folder")


def test_external_data_through_a_link_leading_out_is_refused(tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    path, name, _ = external(tmp_path, "link.bin")
    os.symlink(tmp_path / "outside.bin", path.parent / "link.bin")
    refused(path, rf"initializer '{name}' keeps its data in 'link.bin', outside the file's folder")


def test_external_data_past_its_file_is_refused(tmp_path):
    path, name, nbytes = external(tmp_path, "w.bin", offset=8)
    (path.parent / "w.bin").write_bytes(b"\0" * nbytes)
    refused(path, rf"initializer '{name}' declares {nbytes:,} bytes at offset 8 of 'w.bin'")


# ---------------------------------------------------------------- graph structure


def test_cycle_is_refused(tmp_path):
    nodes = [
        helper.make_node("Relu", ["input"], ["output"], name="out"),
        helper.make_node("Relu", ["b"], ["a"], name="ab"),
        helper.make_node("Tanh", ["a"], ["b"], name="ba"),
    ]
    refused(save(tmp_path, graph(nodes)), r"the graph has a cycle \(through node '(ab|ba)'\)")


def test_too_many_nodes_are_refused(tmp_path):
    n = fran.onnx.MAX_NODES + 1
    names = ["input"] + [f"t{i}" for i in range(n - 1)] + ["output"]
    nodes = [helper.make_node("Identity", [a], [b]) for a, b in zip(names, names[1:], strict=False)]
    refused(save(tmp_path, graph(nodes)), r"10,001 nodes, more than MAX_NODES = 10,000")


def test_deeply_nested_blocks_are_refused(tmp_path):
    block = dense(2)
    for _ in range(70):
        block = residual([block])
    model = fran.init_weights(network([block]), 1, 2)
    proto = fran.onnx.to_model_proto(model)
    refused(save(tmp_path, proto), r"fran metadata is invalid.*nested over META_MAX_DEPTH")
    del proto.metadata_props[:]
    refused(save(tmp_path, proto), r"residual blocks nest more than MAX_NESTING = 64 deep")


def test_a_written_twice_or_unwritten_tensor_is_refused(tmp_path):
    nodes = [
        helper.make_node("Relu", ["input"], ["output"]),
        helper.make_node("Tanh", ["input"], ["output"]),
    ]
    refused(save(tmp_path, graph(nodes)), r"tensor 'output' is written twice")
    nodes = [helper.make_node("Relu", ["nowhere"], ["output"], name="r")]
    refused(save(tmp_path, graph(nodes)), r"node 'r' reads 'nowhere', which nothing writes")


@pytest.mark.parametrize("opset", [9, 99])
def test_foreign_opsets_are_refused(tmp_path, opset):
    proto = graph([helper.make_node("Relu", ["input"], ["output"])], opset=opset)
    refused(save(tmp_path, proto), rf"ONNX opset {opset}: fran reads opsets 13 to")


def test_subgraphs_and_functions_are_refused(tmp_path):
    branch = helper.make_graph(
        [], "b", [], [helper.make_tensor_value_info("input", TensorProto.FLOAT, None)]
    )
    node = helper.make_node(
        "If", ["input"], ["output"], then_branch=branch, else_branch=branch, name="if"
    )
    refused(save(tmp_path, graph([node])), r"node 'if' \(If\) has a subgraph")
    proto = graph([helper.make_node("Relu", ["input"], ["output"])])
    proto.functions.add().name = "f"
    refused(save(tmp_path, proto), "the file has functions")


def test_unknown_op_is_refused_before_any_tensor_is_read(tmp_path):
    t = raw_tensor("w", [10**6, 10**6], b"\0\0\0\0")
    proto = graph(
        [helper.make_node("Einsum", ["input", "w"], ["output"], name="e", equation="i,ij->j")], [t]
    )
    refused(save(tmp_path, proto), r"node 'e': op 'Einsum' has no fran layer")


# ---------------------------------------------------------------- fran metadata


def test_metadata_implying_huge_params_is_refused(tmp_path):
    proto = proto_of()
    meta = {p.key: p for p in proto.metadata_props}
    net = json.loads(meta["fran.network"].value)
    net["layers"][4]["args"]["n_out"] = 10**9
    meta["fran.network"].value = json.dumps(net)
    refused(
        save(tmp_path, proto), r"its fran metadata implies [\d,]+ bytes of params in a smaller file"
    )


def test_metadata_naming_an_unknown_layer_is_refused(tmp_path):
    proto = proto_of()
    meta = {p.key: p for p in proto.metadata_props}
    net = json.loads(meta["fran.network"].value)
    net["layers"][0]["layer"] = "no_such_layer"
    meta["fran.network"].value = json.dumps(net)
    refused(save(tmp_path, proto), r"its fran metadata is invalid.*no_such_layer")


# ---------------------------------------------------------------- fuzz

VALID = proto_of().SerializeToString()


def sequence_model(dtype=np.float32):
    """Every sequence layer in one small network (their ops load only from fran's own files)."""
    net = network(
        [
            fran.embedding(5, 4),
            fran.position_embedding(),
            residual([fran.layernorm(), fran.attention(2, causal=True)]),
            residual([fran.layernorm(), dense(8, activation="gelu"), dense(4)]),
            fran.lstm(3),
            fran.rnn(3),
            dense(5, activation="gelu_tanh"),
        ]
    )
    params = fran.engine.init(net, (3,), np.random.default_rng(0), dtype=dtype)
    return fran.Model(spec=net, params=params, input_shape=(3,), dtype=dtype)


VALID_SEQUENCE = proto_of(sequence_model()).SerializeToString()
OPS = [
    "Relu",
    "Conv",
    "Add",
    "Gemm",
    "MaxPool",
    "Identity",
    "Softmax",
    "Flatten",
    "Mul",
    "BatchNormalization",
    "LayerNormalization",
    "Gather",
    "LSTM",
    "RNN",
    "Erf",
    "Transpose",
    "Where",
]


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(0, len(VALID)),
)
def test_fuzz_bytes(tmp_path_factory, edits, cut):
    data = bytearray(VALID)
    for pos, byte in edits:
        data[pos] = byte
    path = tmp_path_factory.mktemp("fuzz") / "m.onnx"
    path.write_bytes(bytes(data[:cut] if cut % 3 == 0 else data))
    loaded_or_refused(path)


@FUZZ
@given(st.data())
def test_fuzz_graph(tmp_path_factory, data):
    proto = onnx.ModelProto.FromString(data.draw(st.sampled_from([VALID, VALID_SEQUENCE])))
    g = proto.graph
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from(["op", "input", "attr", "dims", "drop", "swap", "meta"]))
        node = g.node[data.draw(st.integers(0, len(g.node) - 1))]
        if what == "op":
            node.op_type = data.draw(st.sampled_from(OPS))
        elif what == "input" and node.input:
            names = [n.output[0] for n in g.node] + [t.name for t in g.initializer] + ["input", "x"]
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(
                st.sampled_from(names)
            )
        elif what == "attr" and node.attribute:
            a = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if a.ints:
                a.ints[0] = data.draw(st.integers(-3, 5))
            else:
                a.f = data.draw(st.floats(-2, 2))
        elif what == "dims" and g.initializer:
            t = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
            if t.dims:
                t.dims[0] = data.draw(st.integers(0, 10**7))
        elif what == "drop" and len(g.node) > 1:
            del g.node[data.draw(st.integers(0, len(g.node) - 1))]
        elif what == "swap" and len(g.node) > 1:
            i = data.draw(st.integers(0, len(g.node) - 2))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[i + 1])
            g.node[i].CopyFrom(b)
            g.node[i + 1].CopyFrom(a)
        elif what == "meta":
            del proto.metadata_props[:]
    path = tmp_path_factory.mktemp("fuzz") / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    loaded_or_refused(path)


def loaded_or_refused(path):
    try:
        model = fran.onnx.load(path)
    except OnnxError:
        return
    y = fran.predict(model, np.zeros((2, *model.input_shape), model.dtype))
    assert y.shape[0] == 2


def test_the_sequence_fuzz_seed_loads_back(tmp_path):
    assert fran.onnx.load(save(tmp_path, onnx.ModelProto.FromString(VALID_SEQUENCE))) == (
        sequence_model()
    )
