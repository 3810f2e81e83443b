"""The benchmark's twin networks (benchmarks/fran_models.py, torch_models.py, and for the three
peer networks the examples against benchmarks/peers.py) do the same work: equal parameter counts
and the same shape after every layer, checked as bench.py checks them; the checks catch a twin
that differs in shape only; the load warning fires; and a tiny bench run goes through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import bench  # noqa: E402
import fran_models as fm  # noqa: E402
import torch_models as tm  # noqa: E402


def test_the_twins_have_equal_param_counts_and_layer_shapes():
    assert set(bench.check_param_counts(tm)) == set(fm.ARCHITECTURES)
    shapes = bench.check_twin_shapes(tm, torch)
    assert shapes["lenet5"][-1] == (10,)
    assert shapes["autoencoder"][0] == shapes["autoencoder"][-1] == (1, 28, 28)


def test_the_peer_twins_have_equal_param_counts_and_layer_shapes():
    pytest.importorskip("matplotlib")  # peers.py imports the examples, which need it
    counts = bench.check_param_counts(tm, fm.PEERS)
    assert set(counts) == set(fm.PEERS)
    shapes = bench.check_twin_shapes(tm, torch, fm.PEERS)
    assert all(s[0] == (1, 28, 28) and s[-1] == (10,) for s in shapes.values())
    # the residual blocks are one layer each on both sides: 16 x 28 x 28, then 32 x 14 x 14
    assert shapes["resnet_fmnist"][1:3] == [(16, 28, 28), (32, 14, 14)]


def test_a_peer_twin_with_another_head_is_caught(monkeypatch):
    """The ResNet's twin with a wider dense head: the parameter counts differ."""
    pytest.importorskip("matplotlib")
    import peers

    def wider():
        net = peers.torch_resnet_fmnist()
        net[-1] = torch.nn.Linear(32 * 7 * 7, 11)
        return net

    monkeypatch.setitem(peers.TORCH_NETS, "resnet_fmnist", wider)
    with pytest.raises(AssertionError, match="resnet_fmnist: fran has"):
        bench.check_param_counts(tm, ["resnet_fmnist"])


def test_a_peer_epoch_runs_in_both_frameworks():
    """One tiny epoch of each peer item's fran and torch calls, as bench_train makes them."""
    pytest.importorskip("matplotlib")
    X, y = bench.make_data(256, 0)
    xt, yt = tm.as_tensors(X, y)
    for name in fm.PEERS:
        work = bench.TrainWork(name, images="n_train_peers")
        batch = fm.peer_batch_size(name)
        assert batch == {"pytorch_mnist": 64, "keras_mnist": 128, "resnet_fmnist": 128}[name]
        model = bench.fran_epoch(work, X, y, batch, 0)()
        assert model.step == 1 + 256 // batch  # the warm-up step, then the epoch
        trainer = bench.torch_epoch(work, xt, yt, batch, 0, tm)()
        assert trainer.step == 1 + 256 // batch


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
    bench.check_param_counts(tm)  # the old check alone passes
    with pytest.raises(AssertionError, match="autoencoder: fran's layer shapes"):
        bench.check_twin_shapes(tm, torch)


def test_high_load_is_flagged():
    assert not bench.high_load(0.3, 2, 0)
    assert bench.high_load(1.5, 2, 0)  # before the run: other work on the machine
    assert not bench.high_load(2.4, 2, 2)  # during it: its own two threads explain the load
    assert bench.high_load(4.0, 2, 2)


def test_the_load_warning_is_printed_and_recorded(monkeypatch, capsys):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    results: dict = {}
    bench.check_load(results, "before the run", 0)
    assert "warning: load average 9.00" in capsys.readouterr().err
    assert len(results["warnings"]) == 1
