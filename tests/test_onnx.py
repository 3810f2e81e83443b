"""fran.onnx without ONNX Runtime or torch: export, onnx.checker, onnx's reference evaluator,
the bitwise round trip, the matcher on graphs fran did not write, and its errors.

The reference evaluator (onnx.reference, NumPy) runs every file in float32 and float64, so the
float64 comparison at 1e-12 covers the convolutions ONNX Runtime runs only in float32; the
oracle tests (tests/oracle/test_onnx_runtime.py) run the same files in ONNX Runtime.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from helpers.onnx_cases import (  # noqa: E402
    EXAMPLES,
    char_lm_model,
    eps_as_written,
    example_model,
    images,
    random_models,
    token_ids,
)  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.ops._op import OpRunUnaryNum  # noqa: E402

import fran  # noqa: E402
import fran.onnx  # noqa: E402
from fran import (  # noqa: E402
    batchnorm,
    conv2d,
    dense,
    dropout,
    flatten,
    network,
    residual,
)
from fran.onnx import OnnxError  # noqa: E402

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
SOME = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


class Erf(OpRunUnaryNum):
    """onnx.reference's Erf rounds through float32 (np.vectorize(erf, otypes=["f"])): this one
    keeps the input's dtype, so gelu's float64 graph is checked at 1e-12 (ONNX Runtime has no
    float64 Erf)."""

    def _run(self, x):
        flat = np.fromiter(map(math.erf, x.ravel().tolist()), np.float64, count=x.size)
        return (flat.reshape(x.shape).astype(x.dtype),)


def run_reference(proto_or_path, x):
    return ReferenceEvaluator(proto_or_path, new_ops=[Erf]).run(None, {"input": x})[0]


def close(got, want, dtype, model=None):
    """Within TOL, relative to the outputs' scale (at least 1). ONNX keeps batch norm's eps in a
    float32 attribute: a float64 model whose eps is no float32 number (0.1, unlike the default
    1e-5 whose float32 is 2.5e-13 off) is as close as that eps, 1e-8 (the README says so)."""
    scale = max(1.0, float(np.abs(want).max()))
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    tol = TOL[np.dtype(dtype)]
    if model is not None and np.dtype(dtype) == np.float64 and coarse_eps(model.spec):
        tol = 1e-8
    assert np.abs(got - want).max() <= tol * scale


def coarse_eps(spec) -> bool:
    """A batchnorm or layernorm inside spec whose eps is more than 1e-12 from its float32."""
    if isinstance(spec, (batchnorm, fran.layernorm)):
        return abs(float(np.float32(spec.eps)) - spec.eps) > 1e-12
    return any(coarse_eps(s) for s in fran.engine.sublayers(spec))


def without_metadata(proto):
    """The same graph with fran's metadata removed: load must match it like a foreign file."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    del proto.metadata_props[:]
    return proto


# ---------------------------------------------------------------- import hygiene


def test_import_fran_does_not_import_onnx():
    code = "import sys, fran; print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnx' or m == 'fran.onnx'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_export_check_and_run_as_fran_predicts(name, dtype, tmp_path):
    model = example_model(name, dtype)
    path = fran.onnx.export(model, tmp_path / "m.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    x = images(7, dtype)
    close(run_reference(proto, x), fran.predict(model, x), dtype)
    # the batch axis is dynamic: another batch size runs the same file
    close(run_reference(proto, x[:2]), fran.predict(model, x[:2]), dtype)


def test_export_writes_dtype_dynamic_batch_opset_and_metadata(tmp_path):
    model = example_model("resnet_fmnist", np.float64)
    proto = onnx.load(fran.onnx.export(model, tmp_path / "m.onnx"))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", fran.onnx.OPSET)]
    (inp,) = proto.graph.input
    assert inp.type.tensor_type.elem_type == TensorProto.DOUBLE
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert {t.data_type for t in proto.graph.initializer} == {TensorProto.DOUBLE}
    meta = {p.key: p.value for p in proto.metadata_props}
    import json

    layers = json.loads(meta["fran.network"])["layers"]
    assert [entry["layer"] for entry in layers] == [
        fran.registry.rules_for(layer).name for layer in model.spec.layers
    ]
    assert layers[3] == fran.io.encode_spec(model.spec.layers[3], "x")  # fran.io's own codec
    assert meta["fran.dtype"] == "float64" and json.loads(meta["fran.input_shape"]) == [1, 28, 28]
    names = [n.name for n in proto.graph.node]
    assert names[:3] == ["0.conv2d/Conv", "1.batchnorm/BatchNormalization", "2.activation/Relu"]
    assert "3/f/0.conv2d/Conv" in names
    assert proto.graph.node[0].doc_string == repr(model.spec.layers[0])


def test_dense_is_gemm_of_w_in_out_and_batchnorm_momentum_is_flipped(tmp_path):
    """By hand: Gemm(x, w, b) with w stored (in, out), not transposed; batchnorm's ONNX momentum
    is 1 - fran's; dropout's ratio is its rate."""
    net = network([dense(3, activation="tanh"), batchnorm(momentum=0.25, eps=0.5), dropout(0.3)])
    model = fran.init_weights(net, 1, 4, dtype=np.float64, seed=3)
    proto = fran.onnx.to_model_proto(model)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Gemm", "Tanh", "BatchNormalization", "Dropout"]
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert np.array_equal(inits["params/0/w"], model.params[0]["w"])
    assert inits["params/0/w"].shape == (4, 3)
    assert (
        helper.get_attribute_value(proto.graph.node[0].attribute[0])
        if proto.graph.node[0].attribute
        else True
    )
    bn = {a.name: helper.get_attribute_value(a) for a in proto.graph.node[2].attribute}
    assert bn["momentum"] == pytest.approx(0.75) and bn["epsilon"] == pytest.approx(0.5)
    assert float(inits["const/2/ratio"]) == 0.3
    x = np.random.default_rng(0).random((5, 4))
    mean, var = model.state[1]["mean"], model.state[1]["var"]
    z = np.tanh(x @ model.params[0]["w"] + model.params[0]["b"])
    by_hand = (z - mean) / np.sqrt(var + 0.5) * model.params[1]["gamma"] + model.params[1]["beta"]
    close(run_reference(proto, x), by_hand, np.float64)


@SOME
@given(random_models(dtype=np.float64))
def test_random_networks_of_every_layer_kind_float64(case):
    model, x = case
    proto = fran.onnx.to_model_proto(model)  # runs onnx.checker with full checking
    got = run_reference(proto, x)
    close(got, fran.predict(eps_as_written(model), x), np.float64)  # eps as the file keeps it
    if not any(isinstance(s, fran.layernorm) for s in all_layers(model.spec)):
        close(got, fran.predict(model, x), np.float64, model)


def all_layers(spec):
    yield spec
    for s in fran.engine.sublayers(spec):
        yield from all_layers(s)


@SOME
@given(random_models(dtype=np.float32))
def test_random_networks_of_every_layer_kind_float32(case):
    model, x = case
    close(run_reference(fran.onnx.to_model_proto(model), x), fran.predict(model, x), np.float32)


def test_activation_without_onnx_form_is_named(monkeypatch):
    from fran.layers import activations

    monkeypatch.setitem(
        activations.ACTIVATIONS,
        "softsign",
        activations.Activation(lambda z: z / (1 + abs(z)), None),
    )
    model = fran.init_weights(network([flatten(), dense(2, activation="softsign")]), 3, 3)
    with pytest.raises(OnnxError, match=r"layer 1 \(dense.*activation 'softsign' has no ONNX form"):
        fran.onnx.to_model_proto(model)


def test_plugin_layer_without_mapping_is_named(monkeypatch):
    import attrs

    from fran import registry

    @attrs.frozen
    class doubler:
        pass

    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))
    registry.register(
        "doubler", doubler, output_shape=lambda s, shape: shape, init=lambda s, shape, rng: {},
        apply=lambda s, p, x: 2 * x, vjp=lambda s, p, x: (2 * x, lambda dy: ({}, 2 * dy)),
    )  # fmt: skip
    model = fran.init_weights(network([doubler()]), 1, 3)
    with pytest.raises(
        OnnxError, match=r"layer 'doubler' \(.*\) has no ONNX mapping.*fran.onnx.register"
    ):
        fran.onnx.export(model, "never-written.onnx")


def test_export_refuses_non_models():
    with pytest.raises(TypeError, match="fran.onnx.export: model must be a fran Model"):
        fran.onnx.to_model_proto(network([flatten()]))


# ---------------------------------------------------------------- load: fran's own files


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_come_back_equal(name, dtype, tmp_path):
    model = example_model(name, dtype, seed=5)
    model = fran.Model(
        spec=network(model.spec.layers, 3, 120), params=model.params, input_shape=model.input_shape,
        dtype=dtype, state=model.state, seed=5,
    )  # fmt: skip
    back = fran.onnx.load(fran.onnx.export(model, tmp_path / "m.onnx"))
    assert back == model  # specs, params and state bitwise, input shape, seed, counters
    assert back.spec.layers == model.spec.layers
    assert (back.epoch, back.step, back.seed) == (3, 120, 5)


@SOME
@given(random_models(dtype=np.float32))
def test_random_networks_come_back_equal(case):
    model, _ = case
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        assert fran.onnx.load(fran.onnx.export(model, Path(d) / "m.onnx")) == model


def test_edited_fran_file_is_matched_not_trusted(tmp_path):
    """Metadata that no longer describes the graph (a Relu replaced by a Tanh) is not believed:
    the graph is matched like a foreign file's."""
    model = example_model("cnn_fmnist", np.float64)
    proto = fran.onnx.to_model_proto(model)
    relu = next(n for n in proto.graph.node if n.op_type == "Relu")
    relu.op_type = "Tanh"
    onnx.save(proto, tmp_path / "edited.onnx")
    back = fran.onnx.load(tmp_path / "edited.onnx")
    assert back.spec.layers[0] == conv2d(k=3, channels=32, activation="tanh")
    x = images(3, np.float64)
    close(fran.predict(back, x), run_reference(proto, x), np.float64)


# ---------------------------------------------------------------- load: the matcher


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_matcher_reads_the_examples_without_metadata(name, tmp_path):
    model = example_model(name, np.float64)
    onnx.save(without_metadata(fran.onnx.to_model_proto(model)), tmp_path / "m.onnx")
    back = fran.onnx.load(tmp_path / "m.onnx")
    x = images(5, np.float64)
    close(fran.predict(back, x), fran.predict(model, x), np.float64)
    kinds = [type(layer).__name__ for layer in back.spec.layers]
    assert kinds == [type(layer).__name__ for layer in model.spec.layers]  # no fusion to undo here


def test_matcher_reads_resnet_structure(tmp_path):
    model = example_model("resnet_fmnist", np.float64)
    onnx.save(without_metadata(fran.onnx.to_model_proto(model)), tmp_path / "m.onnx")
    back = fran.onnx.load(tmp_path / "m.onnx")
    blocks = [layer for layer in back.spec.layers if isinstance(layer, residual)]
    assert blocks[0].shortcut is None
    assert blocks[1].shortcut == (conv2d(k=1, channels=32, stride=2), batchnorm())
    assert (
        back.spec.layers[1] == batchnorm()
        and back.state[1]["var"].tobytes() == model.state[1]["var"].tobytes()
    )


@SOME
@given(random_models(dtype=np.float64))
def test_matcher_reads_random_networks(case):
    model, x = case
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        onnx.save(without_metadata(fran.onnx.to_model_proto(model)), Path(d) / "m.onnx")
        if not matchable(model.spec, model.input_shape):  # a sequence layer's nodes
            with pytest.raises(OnnxError, match=r"m.onnx: node '[^']+' \(?|op '"):
                fran.onnx.load(Path(d) / "m.onnx")
            return
        back = fran.onnx.load(Path(d) / "m.onnx")
    close(fran.predict(back, x), fran.predict(model, x), np.float64)
    assert back.dtype == model.dtype


SEQUENCE_LAYERS = (
    fran.layernorm, fran.position_embedding, fran.embedding, fran.attention, fran.rnn, fran.lstm
)  # fmt: skip


def matchable(spec, shape) -> bool:
    """Whether the matcher reads spec's graph in a foreign file: not the sequence layers, not
    dense on (T, C) sequences, not gelu (fran reads their nodes only in its own files)."""
    if isinstance(spec, SEQUENCE_LAYERS):
        return False
    if getattr(spec, "activation", None) in ("gelu", "gelu_tanh"):
        return False
    if isinstance(spec, fran.activation) and spec.name in ("gelu", "gelu_tanh"):
        return False
    if isinstance(spec, dense) and len(shape) != 1:
        return False
    if isinstance(spec, (network, residual)):
        for layer in spec.layers:
            if not matchable(layer, shape):
                return False
            shape = fran.engine.output_shape(layer, shape)
        return True
    return True


def graph_file(tmp_path, nodes, inits, shape=(4,), out_shape=None, opset=17, name="g.onnx"):
    """A hand-made float64 graph from "input" to "output"."""
    dt = TensorProto.DOUBLE
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("input", dt, ["N", *shape])],
        [helper.make_tensor_value_info("output", dt, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    path = tmp_path / name
    onnx.save(proto, path)
    return path, proto


def test_matmul_add_and_reshape_and_identity_read_as_dense_and_flatten(tmp_path):
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((12, 3)), rng.standard_normal(3)
    nodes = [
        helper.make_node("Identity", ["input"], ["i"]),
        helper.make_node("Reshape", ["i", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["output"]),
    ]
    path, proto = graph_file(
        tmp_path, nodes, {"shape": np.array([0, -1]), "w": w, "b": b}, shape=(3, 2, 2)
    )
    model = fran.onnx.load(path)
    assert model.spec.layers == (flatten(), dense(n_out=3, activation="sigmoid"))
    assert np.array_equal(model.params[1]["w"], w) and np.array_equal(model.params[1]["b"], b)
    x = rng.random((4, 3, 2, 2))
    close(fran.predict(model, x), run_reference(proto, x), np.float64)


def test_gemm_transposed_weights_read_as_dense(tmp_path):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 4))  # torch's Linear: (out, in)
    nodes = [helper.make_node("Gemm", ["input", "W"], ["output"], transB=1)]
    path, proto = graph_file(tmp_path, nodes, {"W": W})
    model = fran.onnx.load(path)
    assert model.spec.layers == (dense(n_out=3),)
    assert np.array_equal(model.params[0]["w"], W.T) and not model.params[0]["b"].any()
    x = rng.random((2, 4))
    close(fran.predict(model, x), run_reference(proto, x), np.float64)


W3 = np.ones((2, 1, 3, 3))
REFUSED = [
    ("unknown op", [helper.make_node("LeakyRelu", ["input"], ["output"])], {}, (4,),
     r"node 'bad': op 'LeakyRelu' has no fran layer; fran reads .*Conv"),
    ("dilation", [helper.make_node("Conv", ["input", "w"], ["output"], dilations=[2, 2])],
     {"w": W3}, (1, 8, 8), r"node 'bad' \(Conv\): dilations \[2, 2\]"),
    ("group", [helper.make_node("Conv", ["input", "w"], ["output"], group=2)],
     {"w": np.ones((2, 1, 3, 3))}, (2, 8, 8), r"node 'bad' \(Conv\): .*group"),
    ("asymmetric pads", [helper.make_node("Conv", ["input", "w"], ["output"], pads=[0, 1, 0, 1])],
     {"w": W3}, (1, 8, 8), r"node 'bad' \(Conv\): pads \[0, 1, 0, 1\]"),
    ("computed weights", [helper.make_node("Conv", ["input", "input"], ["output"])],
     {}, (1, 3, 3), r"node 'bad' \(Conv\): input 'input' must be a constant"),
    ("gemm alpha", [helper.make_node("Gemm", ["input", "w"], ["output"], alpha=2.0)],
     {"w": np.ones((4, 2))}, (4,), r"node 'bad' \(Gemm\): alpha/beta/transA"),
    ("ceil mode", [helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[2, 2], ceil_mode=1)],
     {}, (1, 5, 5), r"node 'bad' \(MaxPool\): fran's max pooling has no padding and floor mode"),
    ("softmax axis", [helper.make_node("Softmax", ["input"], ["output"], axis=1)],
     {}, (3, 2, 2), r"node 'bad' \(Softmax\): axis 1"),
    ("lone Add", [helper.make_node("Add", ["input", "c"], ["output"])],
     {"c": np.ones(4)}, (4,), r"node 'bad' \(Add\) is not a residual block's join"),
    ("batchnorm training", [helper.make_node("BatchNormalization", ["input", "c", "c", "c", "c"], ["output"], training_mode=1)],
     {"c": np.ones(4)}, (4,), r"node 'bad' \(BatchNormalization\): fran reads batch norm in inference form"),
    ("flatten axis", [helper.make_node("Flatten", ["input"], ["output"], axis=2)],
     {}, (2, 2, 2), r"node 'bad' \(Flatten\): axis 2"),
    ("conv on vectors", [helper.make_node("Conv", ["input", "w"], ["output"])],
     {"w": W3}, (4,), r"node 'bad' \(Conv\): its input samples have shape \(4,\)"),
]  # fmt: skip


@pytest.mark.parametrize("what,nodes,inits,shape,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_fran_cannot_express_is_refused_by_name(what, nodes, inits, shape, message, tmp_path):
    for node in nodes:
        node.name = "bad"
    path, _ = graph_file(tmp_path, nodes, inits, shape=shape)
    with pytest.raises(OnnxError, match=message) as info:
        fran.onnx.load(path)
    assert str(path) in str(info.value)


def test_a_fork_that_is_not_a_residual_is_refused(tmp_path):
    nodes = [
        helper.make_node("Relu", ["input"], ["a"], name="r"),
        helper.make_node("Tanh", ["input"], ["b"], name="t"),
        helper.make_node("Mul", ["a", "b"], ["output"], name="m"),
    ]
    path, _ = graph_file(
        tmp_path, nodes[:2] + [helper.make_node("Sum", ["a", "b"], ["output"], name="m")], {}
    )
    with pytest.raises(OnnxError, match="node 'm': op 'Sum' has no fran layer"):
        fran.onnx.load(path)


def test_a_node_off_the_path_is_refused(tmp_path):
    nodes = [
        helper.make_node("Relu", ["input"], ["output"], name="on"),
        helper.make_node("Tanh", ["c"], ["dangling"], name="off"),
    ]
    path, _ = graph_file(tmp_path, nodes, {"c": np.ones(2)})
    with pytest.raises(OnnxError, match=r"node 'off' \(Tanh\) is not on the path"):
        fran.onnx.load(path)


def test_loaded_model_trains(tmp_path):
    model = example_model("resnet_fmnist", np.float32)
    onnx.save(without_metadata(fran.onnx.to_model_proto(model)), tmp_path / "m.onnx")
    back = fran.onnx.load(tmp_path / "m.onnx")
    X, y = images(8), np.arange(8) % 10
    trained = fran.train_nn(back, X, y, batch_size=8)
    assert trained.step == 1
    assert not np.array_equal(trained.params[0]["w"], back.params[0]["w"])


def test_load_refuses_non_paths_and_missing_files(tmp_path):
    with pytest.raises(TypeError, match="fran.onnx.load: path must be a str or os.PathLike"):
        fran.onnx.load(3)
    with pytest.raises(FileNotFoundError):
        fran.onnx.load(tmp_path / "missing.onnx")


def test_a_branch_tensor_read_outside_its_branch_is_refused(tmp_path):
    """x -> Relu -> a -> Tanh -> b; s = b + x; out = s + a: a is inside the block and after it."""
    nodes = [
        helper.make_node("Relu", ["input"], ["a"], name="relu"),
        helper.make_node("Tanh", ["a"], ["b"], name="tanh"),
        helper.make_node("Add", ["b", "input"], ["s"], name="join"),
        helper.make_node("Add", ["s", "a"], ["output"], name="late"),
    ]
    path, _ = graph_file(tmp_path, nodes, {})
    with pytest.raises(
        OnnxError,
        match=r"tensor 'a' inside a residual branch is also read outside it \(nodes \['late'\]\)",
    ):
        fran.onnx.load(path)


def test_the_examples_run_folder_gets_model_onnx(tmp_path):
    """examples/_common.report writes model.onnx beside model.npz (the main job's run folder)."""
    import _common

    model = example_model("lenet5_mnist")
    said = []
    assert _common.write_onnx(model, tmp_path / "model.onnx", said.append) == ["model.onnx"]
    assert fran.onnx.load(tmp_path / "model.onnx") == model and not said


# ---------------------------------------------------------------- sequences


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["transformer", "rnn", "lstm"])
def test_char_lm_exports_runs_and_comes_back(kind, dtype, tmp_path):
    """examples/char_lm.py's small GPT (and its rnn and lstm variants), built as the example
    builds it: checked, run by the reference evaluator as predict, loaded back bitwise."""
    model = char_lm_model(kind, dtype)
    path = fran.onnx.export(model, tmp_path / "lm.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = token_ids(3, dtype=dtype)
    close(run_reference(str(path), x), fran.predict(eps_as_written(model), x), dtype)
    assert fran.onnx.load(path) == model


def by_hand_gelu(z):
    return z * (1 + np.vectorize(math.erf)(z / math.sqrt(2))) / 2


def test_sequence_layers_write_the_documented_nodes():
    """By hand: the op list of each sequence layer's form, and the values of the ones whose
    maths is easy to write again (gelu from math.erf, LSTM's gate order by a loop)."""
    rng = np.random.default_rng(0)

    def model_of(layers, shape):
        net = network(layers)
        params = fran.engine.init(net, shape, rng, dtype=np.float64)
        params = fran.tree.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), params)
        return fran.Model(spec=net, params=params, input_shape=shape, dtype=np.float64)

    def ops(model):
        return [n.op_type for n in fran.onnx.to_model_proto(model).graph.node]

    gelu = model_of([dense(3, activation="gelu")], (2, 4))
    assert ops(gelu) == ["MatMul", "Add", "Mul", "Erf", "Add", "Div", "Mul"]
    x = rng.standard_normal((2, 2, 4))
    z = x @ gelu.params[0]["w"] + gelu.params[0]["b"]
    close(run_reference(fran.onnx.to_model_proto(gelu), x), by_hand_gelu(z), np.float64)
    assert ops(model_of([dense(3, activation="gelu")], (4,)))[0] == "Gemm"
    assert ops(model_of([fran.layernorm()], (2, 4))) == ["LayerNormalization"]
    assert ops(model_of([fran.embedding(5, 2)], (3,))) == ["Round", "Cast", "Gather"]
    assert "Where" in ops(model_of([fran.attention(2, causal=True)], (3, 4)))
    assert "Where" not in ops(model_of([fran.attention(2)], (3, 4)))
    lstm = model_of([fran.lstm(2)], (3, 2))
    assert "LSTM" in ops(lstm)
    p, H = lstm.params[0], 2
    x = rng.standard_normal((2, 3, 2))
    h, c, ys = np.zeros((2, H)), np.zeros((2, H)), []
    for t in range(3):  # torch's gate blocks: input, forget, cell, output
        a = x[:, t] @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
        i, f, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        ys.append(h)
    close(run_reference(fran.onnx.to_model_proto(lstm), x), np.stack(ys, 1), np.float64)


FOREIGN = [
    ("LayerNormalization", "LayerNormalization", {"axis": -1}, ["w", "b"], (3, 4)),
    ("Erf", "Erf", {}, [], (4,)),
    ("LSTM", "LSTM", {"hidden_size": 2}, ["W", "R"], (3, 4)),
]


@pytest.mark.parametrize("op,op_type,attrs,extra,shape", FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_files_with_sequence_ops_are_refused_by_name(
    op, op_type, attrs, extra, shape, tmp_path
):
    """The matcher reads the sequence layers' nodes only in fran's own files: another
    exporter's (or an edited fran file's) are refused with the node and op named."""
    inits = {"w": np.ones(4), "b": np.zeros(4), "W": np.ones((1, 8, 4)), "R": np.ones((1, 8, 2))}
    node = helper.make_node(op_type, ["input", *extra], ["output"], name="seq", **attrs)
    path, _ = graph_file(tmp_path, [node], {k: inits[k] for k in extra}, shape=shape)
    with pytest.raises(OnnxError, match=f"node 'seq': op '{op}' has no fran layer") as info:
        fran.onnx.load(path)
    assert str(path) in str(info.value)


def test_an_edited_fran_file_with_sequence_ops_is_refused_by_name(tmp_path):
    model = char_lm_model("transformer", np.float64, T=4)
    proto = fran.onnx.to_model_proto(model)
    ln = next(n for n in proto.graph.node if n.op_type == "LayerNormalization")
    ln.attribute[0].i = 0 if ln.attribute[0].name == "axis" else ln.attribute[0].i
    ln.attribute[-1].f = 0.5  # epsilon: the metadata no longer describes the graph
    onnx.save(proto, tmp_path / "edited.onnx")
    with pytest.raises(
        OnnxError, match=r"edited.onnx: node '[^']+' \(\w+\): fran reads this op only"
    ):
        fran.onnx.load(tmp_path / "edited.onnx")
