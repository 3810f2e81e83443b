"""The benchmark's twin networks (benchmarks/fran_models.py, torch_models.py) do the same work:
equal parameter counts and the same shape after every layer, checked as bench.py checks them;
and the checks catch a twin that differs in shape only; and the load warning fires."""

from __future__ import annotations

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
