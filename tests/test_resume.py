"""Kill-and-resume: training SIGKILLed at random moments and restarted ends bit for bit where an
uninterrupted run ends.

tests/helpers/resume_worker.py trains a small conv net, writing a checkpoint after every epoch and resuming
from it when one exists. The test kills it with SIGKILL at kill points drawn from a seeded RNG:
mid-epoch, during or just after a checkpoint write, at a random time after training starts, and
(through the worker's --pause hooks) with a checkpoint half written or written but not renamed.
After every kill the directory must hold a loadable checkpoint no older than the last committed one;
at the end the params, optimizer state, counters and loss history must equal the uninterrupted
run's exactly. That also checks that no RNG state needs saving: epoch e shuffles with
default_rng([seed, e]).
"""

from __future__ import annotations

import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fran
from fran.tree import tree_items

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "helpers" / "resume_worker.py"
# A worker to be killed commits at most HOLD epochs, then waits for its kill: the 6 timed kills
# (the 2 paused ones commit nothing) take the run to at most 6 * HOLD < EPOCHS, so every planned
# kill finds the worker alive and training, whatever the machine's load did to the timings.
EPOCHS, SEED, HOLD = 14, 5, 2
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
ENV = {**os.environ, **THREADS, "PYTHONPATH": str(ROOT)}
TIMEOUT = 30.0  # seconds any single wait may take before the test gives up


class Worker:
    """A running resume_worker.py whose stdout lines arrive, timestamped, on a queue."""

    def __init__(
        self, directory: Path, pause: str | None = None, training: tuple = ("1", 16), hold=None
    ):
        threads, batch = training
        cmd = [sys.executable, str(WORKER), "--dir", str(directory), "--epochs", str(EPOCHS),
               "--seed", str(SEED), "--batch", str(batch)] + (["--pause", pause] if pause else [])  # fmt: skip
        cmd += [] if hold is None else ["--hold-after-saves", str(hold)]
        env = {**ENV, "FRAN_NUM_THREADS": threads}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        self.started = time.monotonic()
        self.log: list[str] = []
        self.ended = False
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put((time.monotonic(), None))

    def next_line(self) -> tuple[float, str | None]:
        try:
            when, line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.kill()
            pytest.fail(f"worker silent for {TIMEOUT} s; output so far: {self.log}")
        if line is None:
            self.ended = True
        else:
            self.log.append(line)
        return when, line

    def wait_for(self, word: str, nth: int = 1) -> float | None:
        """When the nth line starting with `word` was printed; None if the worker exited first."""
        seen = 0
        while True:
            when, line = self.next_line()
            if line is None:
                return None
            if line.split()[0] == word:
                seen += 1
                if seen == nth:
                    return when

    def kill(self) -> bool:
        """SIGKILL the worker; True if it was still running."""
        alive = self.proc.poll() is None
        if alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)
        return alive and self.proc.returncode == -signal.SIGKILL

    def finish(self) -> list[str]:
        while not self.ended:
            self.next_line()
        assert self.proc.wait(timeout=TIMEOUT) == 0, self.log
        assert self.log[-1] == "done", self.log
        return self.log


def reference_run(directory: Path, training: tuple) -> tuple[float, float]:
    """Run uninterrupted; return the median times of an epoch and of a checkpoint write."""
    worker = Worker(directory, training=training)
    seen: dict[tuple[str, int], float] = {}
    while True:
        when, line = worker.next_line()
        if line is None:
            break
        word, *rest = line.split()
        if rest:
            seen[word, int(rest[0]) + (word == "start")] = when
    assert worker.proc.wait(timeout=TIMEOUT) == 0 and worker.log[-1] == "done", worker.log
    epochs = range(1, EPOCHS + 1)
    epoch = statistics.median(seen["saving", e] - seen["start", e] for e in epochs)
    write = statistics.median(seen["saved", e] - seen["saving", e] for e in epochs)
    return epoch, write


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".checkpoint.npz.*.tmp"))


def committed_epoch(directory: Path) -> int:
    """The epoch of the checkpoint on disk (0 when none); it must always load."""
    found = fran.load_checkpoint(directory) if directory.is_dir() else None
    return 0 if found is None else found[0].epoch


def kill_plan(rng: np.random.Generator, epoch: float, write: float) -> list[tuple]:
    """(kind, worker --pause, where to aim) for each kill, in a seeded random order.

    Aims are relative to the worker's progress lines and scaled by the measured epoch and
    checkpoint-write times, so each kill lands where intended however fast training runs.
    """
    kinds = ["mid-epoch", "mid-epoch", "in-write", "in-write", "after-commit", "anytime"]
    kinds += ["half-written", "before-replace"]
    plan = []
    for kind in rng.permutation(kinds):
        pause = None
        if kind == "mid-epoch":  # during the 1st or 2nd epoch this worker runs
            aim = ("start", int(rng.integers(1, 3)), rng.uniform(0.05, 0.95) * epoch)
        elif kind == "in-write":  # somewhere inside save_checkpoint, or just after it
            aim = ("saving", 1, rng.uniform(0.0, 1.2) * write)
        elif kind == "after-commit":
            aim = ("saved", 1, rng.uniform(0.0, 0.2) * epoch)
        elif kind == "anytime":
            aim = ("start", 1, rng.uniform(0.0, 1.5) * (epoch + write))
        else:  # the worker stops inside its first checkpoint write and says "paused"
            pause = str(kind)
            aim = ("paused", 1, rng.uniform(0.0, 0.01))
        plan.append((str(kind), pause, (aim[0], aim[1], float(aim[2]))))
    return plan


def kill_once(directory: Path, kind: str, pause: str | None, aim: tuple, training: tuple) -> bool:
    """Start a worker, kill it as aimed, check the checkpoint on disk; True if it was killed."""
    before, temps = committed_epoch(directory), len(temp_files(directory))
    worker = Worker(directory, pause, training, hold=HOLD)
    word, nth, delay = aim
    when = worker.wait_for(word, nth)
    if when is None:
        worker.finish()
        return False
    time.sleep(max(0.0, when + delay - time.monotonic()))
    killed = worker.kill()
    after = committed_epoch(directory)  # raises CheckpointError if the kill tore the file
    assert after >= before, (kind, before, after, worker.log)
    if killed and pause is not None:
        # Killed inside the write: the new checkpoint never committed; the old one survived.
        assert after == before, (kind, before, after, worker.log)
        assert len(temp_files(directory)) == temps + 1, (kind, list(directory.iterdir()))
    return killed


def assert_same_leaves(a, b) -> None:
    items_a, items_b = list(tree_items(a)), list(tree_items(b))
    assert [p for p, _ in items_a] == [p for p, _ in items_b]
    for (path, x), (_, y) in zip(items_a, items_b, strict=True):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, path
            assert np.array_equal(x, y) and x.tobytes() == y.tobytes(), path
        else:
            assert x == y, path


# (FRAN_NUM_THREADS, batch size): batches of 16 are never split; 64 on two threads always are
TRAINING = [("1", 16), ("2", 64)]


@pytest.mark.parametrize("training", TRAINING, ids=["one-thread", "two-threads"])
@pytest.mark.parametrize("net", ["v1", "v2"])  # v2: dropout, batch norm, residual, a plugin
def test_killed_and_resumed_training_equals_uninterrupted(tmp_path, training, net, monkeypatch):
    monkeypatch.setitem(ENV, "FRAN_RESUME_NET", net)
    epoch, write = reference_run(tmp_path / "reference", training)
    resumed = tmp_path / "resumed"
    plan = kill_plan(np.random.default_rng(20240607), epoch, write)
    killed = [kind for kind, pause, aim in plan if kill_once(resumed, kind, pause, aim, training)]
    # deterministic (see HOLD): every planned kill lands
    assert killed == [kind for kind, _, _ in plan], (killed, plan)
    last = fran.load_checkpoint(resumed)
    log = Worker(resumed, training=training).finish()
    assert log[0] == ("fresh" if last is None else f"resumed {last[0].epoch}"), log
    assert temp_files(resumed) == []  # the last successful write swept up the killed writers' temps

    want, want_meta = fran.load_checkpoint(tmp_path / "reference")
    got, got_meta = fran.load_checkpoint(resumed)
    steps = EPOCHS * -(-512 // training[1])
    assert (got.epoch, got.step) == (want.epoch, want.step) == (EPOCHS, steps)
    assert got.spec == want.spec and got.seed == want.seed == SEED
    assert_same_leaves(want.params, got.params)
    assert_same_leaves(want.opt_state, got.opt_state)
    assert_same_leaves(want.state, got.state)
    assert (net == "v2") == bool(list(tree_items(want.state)))  # v2 carries running statistics
    assert got_meta["history"] == want_meta["history"] and len(want_meta["history"]) == EPOCHS
