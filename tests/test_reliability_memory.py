"""A run under an address-space limit (RLIMIT_AS) finishes, or stops with one clear line.

tests/helpers/memory_worker.py runs examples/lenet5_mnist.py's command line on synthetic MNIST in a
subprocess and sets RLIMIT_AS after its imports, to the address space in use plus a headroom.
A first, unlimited run measures what the run needs beyond that point; with 25% more than that the
run finishes, and a resumed run whose batch needs more than the limit allows stops with a
MemoryError said in one line, leaving the last checkpoint byte for byte as it was (and loadable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fran

WORKER = Path(__file__).resolve().parent / "helpers" / "memory_worker.py"
SMALL = ["--n-train", "2000", "--n-test", "200", "--quiet"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux only"
)


def worker(
    args: list[str], headroom_mib: int | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    fran_root = Path(fran.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(fran_root), os.environ.get("PYTHONPATH")])),
        # no worker threads: a thread's stack is address space too, and its start would fail
        # with a RuntimeError instead of a MemoryError under the limit
        "FRAN_NUM_THREADS": "1",
        # the NumPy kernels: on a cold cache Numba's compiler itself needs more address space
        # than the limit leaves, and dies outside Python (no MemoryError to report)
        "FRAN_KERNELS": "numpy",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    limit = [] if headroom_mib is None else ["--headroom-mib", str(headroom_mib)]
    run = subprocess.run(
        [sys.executable, str(WORKER), *limit, "--", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def test_a_run_under_a_memory_limit_finishes_or_stops_cleanly(tmp_path):
    first, used = worker(
        [*SMALL, "--batch-size", "16", "--epochs", "1", "--out", str(tmp_path / "a")]
    )
    assert first.returncode == 0, first.stderr
    need_mib = (used["peak_kib"] - used["at_limit_kib"]) / 1024

    # somewhat above its need: the whole run (two epochs, the reports) finishes
    limited, _ = worker(
        [*SMALL, "--batch-size", "16", "--epochs", "2", "--out", str(tmp_path / "b")],
        headroom_mib=int(need_mib * 1.25) + 16,
    )
    assert limited.returncode == 0, limited.stderr
    assert fran.load(tmp_path / "b" / "model.npz").epoch == 2

    # a batch of all 2,000 images needs a 110 MiB patch matrix for the first convolution alone,
    # more than the limit leaves: one line naming the epoch and the intact checkpoint
    checkpoint = tmp_path / "a" / "checkpoint.npz"
    before = checkpoint.read_bytes()
    big = ["--batch-size", "2000", "--epochs", "2", "--resume", "--out", str(tmp_path / "a")]
    failed, _ = worker([*SMALL, *big], headroom_mib=int(need_mib) + 8)
    assert failed.returncode == 1, failed.stderr
    (line,) = failed.stderr.splitlines()  # no traceback
    assert line.startswith("lenet5_mnist.py: error: out of memory in epoch 2 (Unable to allocate")
    assert "(epoch 1) is intact" in line
    assert f"the checkpoint in {tmp_path / 'a'} (epoch 1) is intact: continue with --resume" in line
    assert checkpoint.read_bytes() == before
    model, metadata = fran.load_checkpoint(tmp_path / "a")
    assert model.epoch == 1 and len(metadata["history"]) == 1
    assert not list((tmp_path / "a").glob(".*.tmp"))  # nothing half-written


def test_verbose_prints_the_chain_before_the_line(tmp_path):
    first, used = worker([*SMALL, "--batch-size", "16", "--epochs", "1", "--out", str(tmp_path)])
    assert first.returncode == 0, first.stderr
    need_mib = (used["peak_kib"] - used["at_limit_kib"]) / 1024
    big = ["--batch-size", "2000", "--epochs", "2", "--resume", "--out", str(tmp_path)]
    failed, _ = worker([*SMALL, *big, "--verbose"], headroom_mib=int(need_mib) + 8)
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any("_ArrayMemoryError: Unable to allocate" in line for line in lines)  # NumPy's
    assert lines[-1].startswith("lenet5_mnist.py: error: out of memory in epoch 2")
