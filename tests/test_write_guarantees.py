"""The full-disk and concurrent-writer guarantees of fran.save for the files added since: ONNX
exports (fran.onnx.export) and checkpoints holding a user's own optimizer state. A write that
cannot complete (a full tmpfs: ENOSPC; a read-only one: EROFS) raises fran.SaveError naming the
file and leaves the previous file whole and no temporary file; writers racing on one path leave
one complete file of one of them. Real mounts and processes, no mocks; the tmpfs tests skip
where mount is refused (as tests/test_io_full_disk.py)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import fran
from fran.io import SaveError
from fran.tree import tree_leaves, tree_map

ROOT = Path(fran.__file__).resolve().parents[1]


class Velocity(NamedTuple):  # a user's optimizer state, never registered
    count: int
    velocity: Any


def momentum(lr=0.05, beta=0.9) -> fran.Optimizer:
    def init(params):
        return Velocity(0, tree_map(np.zeros_like, params))

    def update(grads, state, params):
        v = tree_map(lambda a, g: beta * a + g, state.velocity, grads)
        return tree_map(lambda a: -lr * a, v), Velocity(state.count + 1, v)

    return fran.Optimizer("momentum", init, update)


def trained(n_in: int, n_out: int, seed: int = 0) -> fran.Model:
    """A dense model after two steps of the user's optimizer (params + as much velocity)."""
    model = fran.init_weights(fran.network([fran.dense(n_out)]), 1, n_in, seed=seed)
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(8, n_in)).astype(np.float32), np.zeros((8, n_out), np.float32)
    return fran.train_nn(model, X, y, loss="mse", batch_size=4, optimizer=momentum())


def same_leaves(a, b) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs, unmounted after the test; skips if mount is refused."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip() or run.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def remount_read_only(mnt: Path) -> None:
    run = subprocess.run(
        ["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only here ({run.stderr.strip()})")


def check_refused(exc: SaveError, target: Path, code: int, fn: str) -> None:
    assert isinstance(exc, OSError) and exc.errno == code, (exc.errno, exc)
    assert exc.filename == str(target) and str(target) in str(exc) and f"{fn}:" in str(exc)


# ------------------------------------------------------------------------------- ONNX exports


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx") and __import__("fran.onnx").onnx


def test_an_onnx_export_onto_a_full_disk_keeps_the_old_file(tmpfs, onnx):
    target = tmpfs / "model.onnx"
    old = fran.init_weights(fran.network([fran.dense(16)]), 1, 8)
    onnx.export(old, target)
    before = target.read_bytes()
    big = fran.init_weights(fran.network([fran.dense(1000)]), 1, 100)  # 400 kB of weights
    with pytest.raises(SaveError) as info:
        onnx.export(big, target)
    check_refused(info.value, target, errno.ENOSPC, "export")
    assert target.read_bytes() == before and os.listdir(tmpfs) == ["model.onnx"]
    assert onnx.load(target) == old


def test_an_onnx_export_onto_a_read_only_disk_keeps_the_old_file(tmpfs, onnx):
    target = tmpfs / "model.onnx"
    old = fran.init_weights(fran.network([fran.dense(16)]), 1, 8)
    onnx.export(old, target)
    before = target.read_bytes()
    remount_read_only(tmpfs)
    with pytest.raises(SaveError) as info:
        onnx.export(fran.init_weights(fran.network([fran.dense(4)]), 1, 8, seed=3), target)
    check_refused(info.value, target, errno.EROFS, "export")
    assert target.read_bytes() == before and os.listdir(tmpfs) == ["model.onnx"]


# ------------------------------------------------------------------ a user's optimizer state


def test_a_checkpoint_with_a_users_state_onto_a_full_disk_keeps_the_old_one(tmpfs):
    old = trained(8, 16)
    target = fran.save_checkpoint(tmpfs / "run", old, metadata={"epoch": 1})
    before = target.read_bytes()
    with pytest.raises(SaveError) as info:
        fran.save_checkpoint(tmpfs / "run", trained(100, 1000), metadata={"epoch": 2})
    check_refused(info.value, target, errno.ENOSPC, "save_checkpoint")
    assert target.read_bytes() == before and os.listdir(tmpfs / "run") == ["checkpoint.npz"]
    loaded, meta = fran.load_checkpoint(tmpfs / "run")
    assert meta == {"epoch": 1} and same_leaves(loaded.params, old.params)
    assert same_leaves(loaded.opt_state, old.opt_state)  # the user's state, whole
    assert loaded.opt_state.count == old.opt_state.count == 2


def test_saving_a_users_state_onto_a_read_only_disk_keeps_the_old_file(tmpfs):
    old = trained(8, 16)
    fran.save(tmpfs / "m.npz", old)
    before = (tmpfs / "m.npz").read_bytes()
    remount_read_only(tmpfs)
    with pytest.raises(SaveError) as info:
        fran.save(tmpfs / "m.npz", trained(8, 16, seed=4))
    check_refused(info.value, tmpfs / "m.npz", errno.EROFS, "save")
    assert (tmpfs / "m.npz").read_bytes() == before


COMMON = """
import json, sys
from typing import Any, NamedTuple
import numpy as np
import fran
from fran.tree import tree_leaves, tree_map

class Velocity(NamedTuple):
    count: int
    velocity: Any

def momentum(lr=0.05, beta=0.9):
    def init(params):
        return Velocity(0, tree_map(np.zeros_like, params))
    def update(grads, state, params):
        v = tree_map(lambda a, g: beta * a + g, state.velocity, grads)
        return tree_map(lambda a: -lr * a, v), Velocity(state.count + 1, v)
    return fran.Optimizer("momentum", init, update)

def model(seed):
    m = fran.init_weights(fran.network([fran.dense(64)]), 1, 128, seed=seed)
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(8, 128)).astype(np.float32), np.zeros((8, 64), np.float32)
    return fran.train_nn(m, X, y, loss="mse", batch_size=4, optimizer=momentum())

def fingerprint(m):
    return [np.asarray(a).tobytes().hex()[:64] + str(np.asarray(a).sum())
            for a in tree_leaves((m.params, m.opt_state))]
"""

WRITER = """
seed, folder, saves = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = model(seed)
for i in range(saves):
    fran.save_checkpoint(folder, m, metadata={"writer": seed, "i": i})
print(json.dumps({"saves": saves}))
"""

READER = """
import os, time
folder, stop = sys.argv[1], sys.argv[2]
want = {seed: fingerprint(model(seed)) for seed in (1, 2)}
loads = 0
deadline = time.monotonic() + 600  # a safety only: it stops when told, after one more load
while time.monotonic() < deadline:
    done = os.path.exists(stop)
    got = fran.load_checkpoint(folder) if os.path.isdir(folder) else None
    if got is not None:
        m, meta = got
        assert fingerprint(m) == want[meta["writer"]], ("a mixture", meta)
        assert type(m.opt_state).__name__ == "Velocity" and m.opt_state.count == 2
        loads += 1
    if done:
        break
print(json.dumps({"loads": loads}))
"""


def start(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(COMMON + code), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_two_writers_of_users_states_and_a_reader_see_only_whole_files(tmp_path):
    folder, stop = tmp_path / "run", tmp_path / "stop"
    reader = start(READER, folder, stop)
    writers = [start(WRITER, seed, folder, 15) for seed in (1, 2)]
    assert [result(w)["saves"] for w in writers] == [15, 15]
    stop.touch()
    assert result(reader)["loads"] > 0  # at least the load after the writers ended
    assert sorted(os.listdir(folder)) == ["checkpoint.npz"]
    model, meta = fran.load_checkpoint(folder)
    assert meta["writer"] in (1, 2) and meta["i"] == 14 and model.seed == meta["writer"]
    assert type(model.opt_state).__name__ == "Velocity"
