"""benchmarks/peers.py and bench.py's runners with PyTorch: peers.load_data holds out what the
examples hold out, the table's standard errors and gap, a paired run on tiny data, and one tiny
epoch of each peer network as bench.py times it. (The twins themselves are checked in
tests/oracle/test_peer_twins.py and test_bench_twins.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]  # as the benchmark scripts put them

torch = pytest.importorskip("torch", reason="needs PyTorch: `./run oracle`, or pip install torch")
pytest.importorskip("matplotlib")  # the peer examples need it

import bench  # noqa: E402
import peers  # noqa: E402
from helpers import fran_models as fm  # noqa: E402
from helpers import peer_twins as twins  # noqa: E402
from helpers import torch_models as tm  # noqa: E402

import fran.data  # noqa: E402

NAMES = twins.NETWORKS


@pytest.fixture(autouse=True)
def _sys_path_as_it_was(monkeypatch):
    """fran_models.peer_example puts examples/ on sys.path; take it off after each test: there
    `import fran_avgpool` would find the plugin's folder as an empty namespace package."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_both_hold_out_the_same_validation_images(monkeypatch):
    """peers.load_data trains on what the example trains on (keras_mnist: the first 90%)."""

    def fake(split="train", n=None, **kw):
        n = 10000 if n is None else n
        return np.arange(n * 784, dtype=np.float32).reshape(n, 1, 28, 28), np.arange(n) % 10

    monkeypatch.setattr(fran.data, "load_mnist", fake)
    for name in ("keras_mnist", "pytorch_mnist"):
        ex = twins.MODULES[name]
        args = ex._common.parse_args(ex.EXAMPLE, ["--n-train", "1000"])
        theirs = ex._common.load_data(ex.EXAMPLE, args)
        mine = peers.load_data(name, 1000)
        np.testing.assert_array_equal(mine["X"], theirs["X"])
        np.testing.assert_array_equal(mine["y"], theirs["y"])
        assert mine["batch"] == ex.EXAMPLE.batch_size
    assert len(peers.load_data("keras_mnist", 1000)["X"]) == 900


def test_the_table_gives_standard_errors_and_the_gap_and_the_json_each_runs_load(
    monkeypatch, tmp_path, capsys
):
    accs = {"fran": [0.97, 0.96, 0.98], "torch": [0.975, 0.965, 0.985]}

    def fake_run(framework):
        return lambda name, data, seed, epochs: (accs[framework][seed], [1.0] * epochs)

    monkeypatch.setattr(peers, "load_data", lambda name, n: {})
    monkeypatch.setattr(peers, "fran_run", fake_run("fran"))
    monkeypatch.setattr(peers, "torch_run", fake_run("torch"))
    monkeypatch.setattr(peers.os, "getloadavg", lambda: (1.234, 0.5, 0.25))
    record = peers.main(["--only", "keras_mnist", "--threads", "1", "--out", str(tmp_path / "r")])
    row = record["table"][-1]
    # mean 97.00 / 97.50, std 1.00 for both, s.e. 1 / sqrt 3 = 0.58; the gap -0.5 / 1 std
    assert row == (
        "| `keras_mnist` | 10 | 97.00% ± 1.00 (s.e. 0.58) | 97.50% ± 1.00 (s.e. 0.58) | -0.50 std "
        "| 1.0 | 1.0 | yes |"
    )
    assert row in capsys.readouterr().out
    saved = json.loads((tmp_path / "r").read_text())
    assert [r["load"] for r in saved["results"]["keras_mnist"]["fran"]] == [[1.23, 0.5, 0.25]] * 3


@pytest.mark.parametrize("name", NAMES)
def test_a_paired_run_trains_both_alike(name):
    """--paired: the twin from fran's params on fran's batches and masks, in float32, scores as
    fran does (a tiny run: one epoch of 3 batches, the last partial)."""
    ex = twins.MODULES[name].EXAMPLE
    X, y = twins.synthetic_images(name, 2 * ex.batch_size + 5)
    Xt, yt = twins.synthetic_images(name, 50, seed=1)
    data = {"X": X.astype(np.float32), "y": y, "Xt": Xt.astype(np.float32), "yt": yt}
    fran_acc, torch_acc = peers.paired_run(name, data | {"batch": ex.batch_size}, 0, 1)
    assert fran_acc == torch_acc


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
