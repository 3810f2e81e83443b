"""fran.onnx.export writes as fran.save does: atomically. A write that cannot complete (a
file-size limit: RLIMIT_FSIZE in a child that ignores SIGXFSZ, so write() fails with EFBIG) raises
fran.SaveError naming the file, leaves the previous file intact and loadable and no temporary file;
concurrent writers of one path leave one complete file of one of them."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import fran  # noqa: E402
import fran.onnx  # noqa: E402

ROOT = Path(fran.__file__).resolve().parents[1]

CHILD = """
import json, resource, signal, sys
import fran, fran.onnx
from fran.io import SaveError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
model = fran.init_weights(fran.network([fran.dense(1000)]), 1, 100, seed=1)  # 400 KB
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    fran.onnx.export(model, sys.argv[1])
except SaveError as exc:
    print(json.dumps({"errno": exc.errno, "filename": exc.filename, "message": str(exc)}))
else:
    print(json.dumps({"errno": None}))
"""

WRITER = """
import sys
import fran, fran.onnx
for i in range(int(sys.argv[3])):
    model = fran.init_weights(fran.network([fran.dense(64)]), 1, 256, seed=int(sys.argv[2]))
    fran.onnx.export(model, sys.argv[1])
"""


def child(code: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_export_over_the_file_size_limit_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.onnx"
    old = fran.init_weights(fran.network([fran.dense(4)]), 1, 3)
    fran.onnx.export(old, target)
    run = child(CHILD, target, 64 * 1024)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["errno"] == errno.EFBIG and got["filename"] == str(target)
    assert str(target) in got["message"] and "fran.onnx.export" in got["message"]
    assert fran.onnx.load(target) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_concurrent_exports_leave_one_complete_file(tmp_path):
    target = tmp_path / "model.onnx"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(target), str(seed), "8"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for seed in (1, 2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    back = fran.onnx.load(target)
    models = [fran.init_weights(fran.network([fran.dense(64)]), 1, 256, seed=s) for s in (1, 2)]
    assert back in models
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert np.isfinite(fran.predict(back, np.zeros((1, 256), np.float32))).all()
