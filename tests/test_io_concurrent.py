"""Concurrent writers and readers of one checkpoint folder, as real processes.

Two writer processes loop save_checkpoint into the same folder, each with its own model (seed 1
or 2, bigger than a page so writes interleave), while a reader process loops load_checkpoint. Every
save must succeed (neither may trip over the other's temporary file), every load must return one
complete checkpoint of one writer, never a mixture (params, seed and metadata all from the same
writer), and at the end the folder holds one loadable checkpoint and no temporary file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fran

ROOT = Path(fran.__file__).resolve().parents[1]
SAVES = 40

COMMON = """
import json, sys, time
import numpy as np
import fran

def model(seed):
    net = fran.network([fran.dense(256, activation="tanh"), fran.dense(10)])
    return fran.init_weights(net, 1, 64, seed=seed)  # ~70 KB of params

def fingerprint(m):
    return [float(np.asarray(leaf, np.float64).sum()) for leaf in fran.tree.tree_leaves(m.params)]
"""

WRITER = """
seed, folder, saves = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = model(seed)
for i in range(saves):
    fran.save_checkpoint(folder, m, metadata={"writer": seed, "i": i})
print(json.dumps({"saves": saves}))
"""

READER = """
folder, stop = sys.argv[1], sys.argv[2]
import os
want = {seed: fingerprint(model(seed)) for seed in (1, 2)}
seen, loads, none = {1: 0, 2: 0}, 0, 0
deadline = time.monotonic() + 600  # a safety only: the reader stops when told, then loads once
while time.monotonic() < deadline:
    done = os.path.exists(stop)
    got = fran.load_checkpoint(folder) if os.path.isdir(folder) else None  # no writer yet
    if got is None:
        none += 1
    else:
        m, meta = got
        writer = meta["writer"]
        assert m.seed == writer, (m.seed, meta)
        assert fingerprint(m) == want[writer], ("a mixture", meta)
        seen[writer] += 1
        loads += 1
    if done:
        break
print(json.dumps({"loads": loads, "none": none, "seen": seen}))
"""


def start(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(COMMON + code), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_two_writers_and_a_reader(tmp_path):
    folder, stop = tmp_path / "run", tmp_path / "stop"
    reader = start(READER, folder, stop)
    writers = [start(WRITER, seed, folder, SAVES) for seed in (1, 2)]
    results = [result(w) for w in writers]
    stop.touch()
    seen = result(reader)
    assert [r["saves"] for r in results] == [SAVES, SAVES]
    assert seen["loads"] > 0, seen
    print(f"\nreader: {seen}")
    assert sorted(os.listdir(folder)) == ["checkpoint.npz"]
    model, meta = fran.load_checkpoint(folder)
    assert meta["writer"] in (1, 2) and meta["i"] == SAVES - 1 and model.seed == meta["writer"]


def test_sweep_spares_live_writers_and_removes_dead_ones(tmp_path):
    model = fran.init_weights(fran.network([fran.dense(3)]), 1, 4)
    live = tmp_path / f".checkpoint.npz.{os.getpid()}.abc.tmp"  # this process: alive
    live.write_bytes(b"being written")
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    time.sleep(0.05)
    dead = tmp_path / f".checkpoint.npz.{dead_proc.pid}.def.tmp"
    dead.write_bytes(b"left by a killed writer")
    fran.save_checkpoint(tmp_path, model)
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.npz", live.name])
