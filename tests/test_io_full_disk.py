"""A write that cannot complete loses nothing: real limits, real files, no mocks.

Three ways a disk says no, each tried on `fran.save` and `fran.save_checkpoint`:

* a file-size limit (RLIMIT_FSIZE in a child process that ignores SIGXFSZ, so write() fails with
  EFBIG instead of the signal killing it);
* a full file system (a 256 KiB tmpfs: ENOSPC);
* a read-only file system (the tmpfs remounted read-only: EROFS; root ignores chmod, not this).

Each must raise fran.io.SaveError (an OSError) naming the file, leave the previous file intact and
loadable, and leave no temporary file. The tmpfs tests need `mount` (root in a sandbox that allows
it); where mounting is refused they skip and say why.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import fran
from fran.io import SaveError

ROOT = Path(fran.__file__).resolve().parents[1]


def small(seed=0):
    """About 1 KiB of params."""
    return fran.init_weights(fran.network([fran.dense(16)]), 1, 8, seed=seed)


def big(seed=1):
    """About 400 KiB of params (float32 100 x 1000), 1.2 MiB with Adam's moments."""
    model = fran.init_weights(fran.network([fran.dense(1000)]), 1, 100, seed=seed)
    X = np.zeros((4, 100), np.float32)
    return fran.train_nn(model, X, np.zeros((4, 1000), np.float32), loss="mse", batch_size=4)


def assert_same(a, b):
    assert a.spec == b.spec and (a.epoch, a.step, a.seed) == (b.epoch, b.step, b.seed)
    for x, y in zip(fran.tree.tree_leaves(a.params), fran.tree.tree_leaves(b.params), strict=True):
        assert x.tobytes() == y.tobytes()


def check_refused(exc: SaveError, target: Path, code: int) -> None:
    assert isinstance(exc, OSError)
    assert exc.errno == code, (exc.errno, exc)
    assert exc.filename == str(target)
    assert str(target) in str(exc)


# ----------------------------------------------------------------------------- RLIMIT_FSIZE

CHILD = """
import json, resource, signal, sys
import numpy as np
import fran
from fran.io import SaveError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not death by signal
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
model = fran.init_weights(fran.network([fran.dense(1000)]), 1, 100, seed=1)
model = fran.train_nn(model, np.zeros((4, 100), np.float32), np.zeros((4, 1000), np.float32),
                      loss="mse", batch_size=4)
try:
    if sys.argv[1] == "save":
        fran.save(sys.argv[2], model)
    else:
        fran.save_checkpoint(sys.argv[2], model)
except SaveError as exc:
    print(json.dumps({"type": type(exc).__name__, "errno": exc.errno, "filename": exc.filename,
                      "message": str(exc), "oserror": isinstance(exc, OSError)}))
else:
    print(json.dumps({"type": None}))
"""


def run_limited(kind: str, target: Path, limit: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), kind, str(target), str(limit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["save", "save_checkpoint"])
def test_file_size_limit(tmp_path, kind):
    old = small()
    if kind == "save":
        target = tmp_path / "model.npz"
        fran.save(target, old)
        arg = target
    else:
        target = fran.save_checkpoint(tmp_path, old)
        arg = tmp_path
    before = target.read_bytes()
    got = run_limited(kind, arg, limit=64 * 1024)  # the new model needs ~1.2 MiB
    assert got["type"] == "SaveError" and got["oserror"], got
    assert got["errno"] == errno.EFBIG and got["filename"] == str(target), got
    assert str(target) in got["message"] and kind in got["message"], got
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == [target.name]
    assert_same(old, fran.load(target))


# ----------------------------------------------------------------------------- tmpfs: ENOSPC, EROFS


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs at tmp_path/fs, unmounted after the test; skips if mount is refused."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
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
    probe = mnt / "probe"
    with pytest.raises(OSError):
        probe.write_bytes(b"x")  # root ignores permissions, but not a read-only mount


def test_no_space_save(tmpfs):
    target = tmpfs / "model.npz"
    old = small()
    fran.save(target, old)
    before = target.read_bytes()
    with pytest.raises(SaveError) as info:
        fran.save(target, big())
    check_refused(info.value, target, errno.ENOSPC)
    assert "save:" in str(info.value)
    assert target.read_bytes() == before and os.listdir(tmpfs) == ["model.npz"]
    assert_same(old, fran.load(target))


def test_no_space_checkpoint(tmpfs):
    old = small()
    target = fran.save_checkpoint(tmpfs / "run", old, metadata={"epoch": 1})
    with pytest.raises(SaveError) as info:
        fran.save_checkpoint(tmpfs / "run", big(), metadata={"epoch": 2})
    check_refused(info.value, target, errno.ENOSPC)
    assert "save_checkpoint:" in str(info.value)
    assert os.listdir(tmpfs / "run") == ["checkpoint.npz"]
    loaded, meta = fran.load_checkpoint(tmpfs / "run")
    assert_same(old, loaded) and meta == {"epoch": 1}
    # once there is room again, the next checkpoint goes through
    fran.save_checkpoint(tmpfs / "run", small(seed=3), metadata={"epoch": 3})
    assert fran.load_checkpoint(tmpfs / "run")[1] == {"epoch": 3}


def test_read_only_folder(tmpfs):
    old = small()
    model_file = tmpfs / "model.npz"
    fran.save(model_file, old)
    checkpoint = fran.save_checkpoint(tmpfs / "run", old, metadata={"epoch": 1})
    remount_read_only(tmpfs)

    with pytest.raises(SaveError) as info:
        fran.save(model_file, small(seed=5))
    check_refused(info.value, model_file, errno.EROFS)
    with pytest.raises(SaveError) as info:
        fran.save_checkpoint(tmpfs / "run", small(seed=5))
    check_refused(info.value, checkpoint, errno.EROFS)
    with pytest.raises(SaveError) as info:  # the folder itself cannot be made
        fran.save_checkpoint(tmpfs / "new" / "run", small(seed=5))
    check_refused(info.value, tmpfs / "new" / "run" / "checkpoint.npz", errno.EROFS)
    with pytest.raises(SaveError) as info:
        fran.io.write_json(tmpfs / "metrics.json", {"a": 1})
    assert "write_json:" in str(info.value)

    assert sorted(os.listdir(tmpfs)) == ["model.npz", "run"]
    assert os.listdir(tmpfs / "run") == ["checkpoint.npz"]
    assert_same(old, fran.load(model_file))
    assert fran.load_checkpoint(tmpfs / "run")[1] == {"epoch": 1}
