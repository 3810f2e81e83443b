"""`mpiexec -n 2 python examples/lenet5_mnist.py --distributed` writes what the single-process
run writes (the same model, bitwise) and prints once; synthetic images stand in for MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fran
from fran.tree import tree_leaves

pytest.importorskip("mpi4py")
MPIEXEC = Path(sys.prefix) / "bin" / "mpiexec"
if not MPIEXEC.exists():
    pytest.skip(f"no mpiexec at {MPIEXEC} (pip install 'fran[mpi]')", allow_module_level=True)
ROOT = Path(fran.__file__).resolve().parents[1]

DRIVER = """
import sys, runpy
import numpy as np
import fran.data

def fake(split="train", n=None, root=None, download=True):
    n = {"train": 60000, "test": 10000}[split] if n is None else n
    rng = np.random.default_rng(0 if split == "train" else 1)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)

fran.data.load_mnist = fake
sys.argv = sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(sys.argv[0]).parent))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _example(tmp_path, name, ranks, *extra):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / name
    script = [sys.executable, str(driver), str(ROOT / "examples" / "lenet5_mnist.py")]
    args = ["--epochs", "2", "--n-train", "192", "--n-test", "64", "--out", str(out), *extra]
    cmd = script + args if ranks is None else [str(MPIEXEC), "-n", str(ranks), *script, *args]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(fran.parallel.ENV, None)
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return out, run.stdout


def test_the_distributed_example_writes_what_one_process_writes(tmp_path):
    one, printed_one = _example(tmp_path, "one", None, "--pieces", "4")
    two, printed_two = _example(tmp_path, "two", 2, "--distributed", "--pieces", "4")
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    a, b = fran.load(one / "model.npz"), fran.load(two / "model.npz")
    for x, y in zip(
        tree_leaves((a.params, a.opt_state)), tree_leaves((b.params, b.opt_state)), strict=True
    ):
        assert np.array_equal(x, y)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1["final"]["test_loss"] == m2["final"]["test_loss"]
    assert m1["confusion_matrix"] == m2["confusion_matrix"]
    assert printed_two.count("final: test loss") == 1  # printed once, by rank 0
    assert printed_two.count("epoch 2/2") == 1
