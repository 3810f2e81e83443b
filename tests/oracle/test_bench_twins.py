"""The benchmark's twin networks (tests/helpers/fran_models.py against torch_models.py, and for
the three peer networks the examples against tests/helpers/peer_twins.py) do the same work: equal
parameter counts and the same shape after every layer, as bench.py checks them before timing; the
checks catch a twin that differs in its head or in shape only; and a tiny bench run goes through
(benchmarks/bench.py in a child process: the tests import nothing from benchmarks/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch
from helpers import fran_models as fm
from helpers import torch_models as tm

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def test_the_twins_have_equal_param_counts_and_layer_shapes():
    assert set(tm.check_param_counts()) == set(fm.ARCHITECTURES)
    shapes = tm.check_twin_shapes()
    assert shapes["lenet5"][-1] == (10,)
    assert shapes["autoencoder"][0] == shapes["autoencoder"][-1] == (1, 28, 28)


def test_the_peer_twins_have_equal_param_counts_and_layer_shapes():
    pytest.importorskip("matplotlib")  # peer_twins.py imports the examples, which need it
    counts = tm.check_param_counts(fm.PEERS)
    assert set(counts) == set(fm.PEERS)
    shapes = tm.check_twin_shapes(fm.PEERS)
    assert all(s[0] == (1, 28, 28) and s[-1] == (10,) for s in shapes.values())
    # the residual blocks are one layer each on both sides: 16 x 28 x 28, then 32 x 14 x 14
    assert shapes["resnet_fmnist"][1:3] == [(16, 28, 28), (32, 14, 14)]


def test_a_peer_twin_with_another_head_is_caught(monkeypatch):
    """The ResNet's twin with a wider dense head: the parameter counts differ."""
    pytest.importorskip("matplotlib")
    from helpers import peer_twins as peers

    def wider():
        net = peers.torch_resnet_fmnist()
        net[-1] = torch.nn.Linear(32 * 7 * 7, 11)
        return net

    monkeypatch.setitem(peers.TORCH_NETS, "resnet_fmnist", wider)
    with pytest.raises(AssertionError, match="resnet_fmnist: fran has"):
        tm.check_param_counts(["resnet_fmnist"])


def test_a_tiny_bench_run(tmp_path):
    """bench.py --quick --only lenet5_train --repeats 1 --n-train 128 in a child process."""
    out = tmp_path / "r.json"
    import fran  # the child imports the fran this test imports

    paths = [str(Path(fran.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    cmd = [sys.executable, str(BENCH_DIR / "bench.py"), "--quick", "--only", "lenet5_train"]
    cmd += ["--repeats", "1", "--n-train", "128", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["complete"]
    (record,) = results["items"]
    assert record["item"] == "lenet5_train" and record["images"] == 128
    assert record["gflop"] == pytest.approx(128 * 1_217_520 / 1e9)
    assert record["fran"]["gflop_per_s"] > 0 and results["peak"]["all_threads"] > 0
    assert "| LeNet-5 train, 1 epoch (128 images) |" in done.stdout


def test_a_twin_with_other_shapes_is_caught(monkeypatch):
    """The same parameter count, another output: the last conv padded by 2 instead of 1."""
    net = fm.autoencoder()
    last = attrs.evolve(net.layers[-1], padding=2)
    wider = attrs.evolve(net, layers=(*net.layers[:-1], last))
    monkeypatch.setitem(fm.ARCHITECTURES, "autoencoder", lambda: wider)
    tm.check_param_counts()  # the old check alone passes
    with pytest.raises(AssertionError, match="autoencoder: fran's layer shapes"):
        tm.check_twin_shapes()
