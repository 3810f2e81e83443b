"""fran.onnx against ONNX Runtime and PyTorch.

- ONNX Runtime runs fran's exported files as fran's predict computes: within 1e-5 in float32 on
  the six example networks, examples/char_lm.py's GPT (and rnn, lstm variants) and on random
  networks of every built-in layer kind; within 1e-12 in float64 where the runtime has float64
  kernels (its CPU provider has none for Conv, ConvTranspose, Erf (gelu), RNN and LSTM: those
  run in float64 in tests/test_onnx.py through onnx's reference evaluator).
- PyTorch's twins of the peer networks (tests/helpers/peer_twins.py) and of the benchmark's
  networks (tests/helpers/torch_models.py: LeNet-5, the CNN, the autoencoder with its ConvTranspose2d), with
  random batch-norm statistics, exported by torch.onnx.export (the TorchScript exporter, with and
  without constant folding: folding merges batch norm into the convolutions), load into fran and
  predict as PyTorch does within 1e-5; the loaded models train with train_nn, and one SGD step on
  a loaded export moves the weights as torch's step does. The peer twins' files from the newer
  exporter (dynamo=True, which needs onnxscript) load and predict as torch too.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from torch import nn  # noqa: E402

import fran  # noqa: E402
import fran.onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
# examples/ goes on the path too (peer_twins.py puts it there), where the folder examples/fran_avgpool
# would shadow an editable install of the plugin as an empty namespace package for the README's
# plugin blocks (which this environment runs): its module itself goes first
sys.path.insert(0, str(ROOT / "examples" / "fran_avgpool"))

from helpers import peer_twins as peers  # noqa: E402, I001  (tests/ is on the path only now)
from helpers import torch_models  # noqa: E402
from helpers.onnx_cases import (  # noqa: E402
    EXAMPLES,
    char_lm_model,
    eps_as_written,
    example_model,
    images,
    random_models,
    token_ids,
)

torch.set_num_threads(1)
SOME = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
TWINS = {**peers.TORCH_NETS, **torch_models.ARCHITECTURES}


def run(proto_or_path, x):
    data = (
        proto_or_path.SerializeToString() if hasattr(proto_or_path, "graph") else str(proto_or_path)
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def close(got, want, tol):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.abs(got - want).max() <= tol * max(1.0, float(np.abs(want).max()))


# ---------------------------------------------------------------- fran -> ONNX Runtime


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_in_onnx_runtime(name, tmp_path):
    model = example_model(name, np.float32)
    path = fran.onnx.export(model, tmp_path / "m.onnx")
    for n in (1, 9):  # the batch axis is dynamic
        x = images(n)
        close(run(path, x), fran.predict(model, x), 1e-5)


@pytest.mark.parametrize("kind", ["transformer", "rnn", "lstm"])
def test_char_lm_in_onnx_runtime(kind, tmp_path):
    """examples/char_lm.py's small GPT and its recurrent variants, built as the example builds
    them: ONNX Runtime predicts the next-character logits as fran does, in float32 (and the
    transformer in float64: its ops all have float64 kernels there)."""
    for dtype in (np.float32, np.float64) if kind == "transformer" else (np.float32,):
        model = char_lm_model(kind, dtype)
        path = fran.onnx.export(model, tmp_path / "lm.onnx")
        for n in (1, 5):  # the batch axis is dynamic
            x = token_ids(n, dtype=dtype)
            want = fran.predict(eps_as_written(model) if dtype == np.float64 else model, x)
            close(run(path, x), want, 1e-5 if dtype == np.float32 else 1e-12)


@SOME
@given(random_models(dtype=np.float32))
def test_random_networks_in_onnx_runtime_float32(case):
    model, x = case
    close(run(fran.onnx.to_model_proto(model), x), fran.predict(model, x), 1e-5)


DOUBLE_KINDS = (
    "dense",
    "flatten",
    "softmax",
    "activation",
    "dropout",
    "batchnorm",
    "residual",
    "maxpooling",
    "layernorm",
    "position_embedding",
    "embedding",
    "attention",
    "rnn",
    "lstm",
)


def float64_missing(spec) -> str | None:
    """The op ONNX Runtime's CPU provider has no float64 kernel for, if spec writes one: Conv,
    ConvTranspose, Erf (gelu), RNN, LSTM (those run in float64 in tests/test_onnx.py through
    onnx's reference evaluator)."""
    if isinstance(spec, (fran.conv2d, fran.conv2d_transpose)):
        return "Conv"
    if isinstance(spec, fran.rnn):
        return "RNN"
    if isinstance(spec, fran.lstm):
        return "LSTM"
    if "gelu" == getattr(spec, "activation", None) or (
        isinstance(spec, fran.activation) and spec.name == "gelu"
    ):
        return "Erf"
    return next(filter(None, map(float64_missing, fran.engine.sublayers(spec))), None)


@SOME
@given(random_models(kinds=DOUBLE_KINDS, dtype=np.float64))
def test_random_networks_in_onnx_runtime_float64(case):
    model, x = case
    missing = float64_missing(model.spec)
    if missing is not None:  # the runtime says so (LSTM's kernel only when it runs)
        message = "does not support double" if missing == "LSTM" else f"NOT_IMPLEMENTED.*{missing}"
        with pytest.raises(Exception, match=message):
            run(fran.onnx.to_model_proto(model), x)
        return
    got = run(fran.onnx.to_model_proto(model), x)
    # ONNX's epsilon attribute is a float32 (see tests/test_onnx.py): as the file computes
    close(got, fran.predict(eps_as_written(model), x), 1e-12)
    tol = 1e-12
    bn = [s for s in _all(model.spec) if isinstance(s, fran.batchnorm)]
    if any(abs(float(np.float32(s.eps)) - s.eps) > 1e-12 for s in bn):
        tol = 1e-8
    if not any(isinstance(s, fran.layernorm) for s in _all(model.spec)):
        close(got, fran.predict(model, x), tol)


def _all(spec):
    yield spec
    for s in fran.engine.sublayers(spec):
        yield from _all(s)


# ---------------------------------------------------------------- PyTorch -> fran


def torch_twin(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = TWINS[name]()
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics as after training, not the fresh 0 and 1
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


def torch_export(net: nn.Module, path: Path, fold: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, do_constant_folding=fold,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )  # fmt: skip
    return path


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
@pytest.mark.parametrize("name", list(TWINS))
def test_torch_exports_load_and_predict_as_torch(name, fold, tmp_path):
    net = torch_twin(name)
    path = torch_export(net, tmp_path / "t.onnx", fold)
    model = fran.onnx.load(path)
    x = images(6)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    close(fran.predict(model, x), want, 1e-5)
    close(run(path, x), want, 1e-5)  # and the runtime agrees with both
    kinds = {type(layer).__name__ for layer in model.spec.layers}
    if name == "resnet_fmnist":
        assert "residual" in kinds and ("batchnorm" in kinds) == (not fold)


@pytest.mark.parametrize("name", ["resnet_fmnist", "pytorch_mnist", "autoencoder"])
def test_torch_exports_train_with_train_nn(name, tmp_path):
    model = fran.onnx.load(torch_export(torch_twin(name), tmp_path / "t.onnx", fold=False))
    x = images(8)
    autoencoder = name == "autoencoder"
    y = x if autoencoder else np.arange(8) % 10
    loss = "mse" if autoencoder else "cross_entropy"
    trained = fran.train_nn(model, x, y, batch_size=8, loss=loss)
    assert trained.step == 1
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(
            fran.tree.tree_leaves(trained.params), fran.tree.tree_leaves(model.params), strict=True
        )
    ]
    assert all(changed)
    assert np.isfinite(fran.evaluate_nn(trained, x, y, loss=loss)["loss"])


def test_torch_exports_train_as_torch_does_for_one_step(tmp_path):
    """One SGD step on a loaded export moves the params as torch's own step moves torch's."""
    net = torch_twin("fmnist_cnn")
    model = fran.onnx.load(torch_export(net, tmp_path / "t.onnx", fold=False))
    net = net.double().train()
    x, y = images(8, np.float64), np.arange(8) % 10
    model64 = fran.Model(
        spec=model.spec,
        params=fran.tree.freeze(fran.tree.tree_map(lambda a: a.astype(np.float64), model.params)),
        input_shape=model.input_shape,
        dtype=np.float64,
    )
    out = fran.train_nn(model64, x, y, batch_size=8, optimizer=fran.sgd(0.1), loss="cross_entropy")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()(net(torch.from_numpy(x)), torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    close(out.params[0]["w"], net[0].weight.detach().numpy(), 1e-10)
    close(out.params[-1]["w"], net[-1].weight.detach().numpy().T, 1e-10)


@pytest.mark.parametrize("name", list(peers.TORCH_NETS))
def test_dynamo_exporter_files_load(name, tmp_path):
    """PyTorch's newer exporter (torch.export based; tox installs its onnxscript) writes other
    patterns (a Reshape for Flatten, opset 20): they load and predict as torch."""
    if importlib.util.find_spec("onnxscript") is None:
        pytest.skip("torch.onnx.export(dynamo=True) needs onnxscript, which is not installed")
    net = torch_twin(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.zeros(2, 1, 28, 28),), str(tmp_path / "d.onnx"), dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("N")},),
        )  # fmt: skip
    model = fran.onnx.load(tmp_path / "d.onnx")
    x = images(4)
    with torch.no_grad():
        close(fran.predict(model, x), net(torch.from_numpy(x)).numpy(), 1e-5)
