"""Train a small network on synthetic data, on one process or under mpiexec; print its hash.

Run by tests/test_distributed.py:

    python tests/helpers/distributed_worker.py --single --net plain         # fran.train_nn
    mpiexec -n 3 python tests/helpers/distributed_worker.py --net plain     # fran.distributed.train_nn

Rank 0 (or the single process) prints one JSON line: the model's sha256 after each epoch, the
losses and the evaluation. --checkpoint DIR saves after every epoch (rank 0) and resumes from
DIR if it holds a checkpoint; --kill-rank R --kill-step S makes rank R SIGKILL itself before
step S; --stop-after E ends the run after epoch E (a resumable interruption); --nan makes the
loss overflow; --hang makes the --kill-rank hang instead; --skew gives rank 1 other data (the ranks' models must then differ).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np

import fran
from fran.layers import batchnorm, dropout
from fran.tree import tree_leaves

SAMPLES, SIDE = 200, 8


def network(name: str) -> fran.network:
    head = [fran.conv2d(k=3, channels=4, activation="relu")]
    if name == "dropout":
        head.append(dropout(0.3))
    if name == "batchnorm":
        head.append(batchnorm())
    return fran.network([*head, fran.flatten(), fran.dense(10), fran.softmax()], 0, 0)


def data(skew: bool = False):
    rng = np.random.default_rng(7 + skew)
    X = rng.random((SAMPLES, 1, SIDE, SIDE), dtype=np.float32)
    y = (X[:, 0].reshape(SAMPLES, -1).argmax(axis=1) % 10).astype(np.int64)
    return X, y


def digest(model) -> str:
    h = hashlib.sha256(f"{model.epoch},{model.step}".encode())
    for leaf in tree_leaves((model.params, model.state, model.opt_state)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--single", action="store_true")
    p.add_argument("--net", default="plain")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--pieces", type=int, default=6)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument("--kill-rank", type=int, default=None)
    p.add_argument("--kill-step", type=int, default=None)
    p.add_argument("--hang", action="store_true", help="--kill-rank hangs instead of dying")
    p.add_argument("--nan", action="store_true")
    p.add_argument("--skew", action="store_true")
    args = p.parse_args()

    if args.single:
        train, evaluate, rank, size = fran.train_nn, fran.evaluate_nn, 0, 1
    else:
        import fran.distributed as dist

        train, evaluate = dist.train_nn, dist.evaluate_nn
        rank, size = dist.rank(), dist.size()
    if args.kill_rank is not None:  # which PID is which rank, for mpiexec's own message
        print(json.dumps({"rank": rank, "pid": os.getpid()}), file=sys.stderr, flush=True)
    X, y = data(args.skew and rank == 1)
    optimizer = fran.sgd(1e30) if args.nan else fran.adam(1e-2)
    model = fran.init_weights(network(args.net), SIDE, SIDE, seed=3)
    if args.checkpoint and (found := fran.load_checkpoint(args.checkpoint)) is not None:
        model = found[0]

    def on_batch(index, value):
        step = model.step + index
        if rank == args.kill_rank and step == args.kill_step:
            if args.hang:
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)

    out = {"ranks": size, "digests": [], "losses": []}
    try:
        while model.epoch < args.epochs:
            losses = []

            def record(index, value, losses=losses):
                losses.append(value)
                on_batch(index, value)

            model = train(
                model, X, y, optimizer=optimizer, batch_size=args.batch, pieces=args.pieces,
                on_batch=record,
            )  # fmt: skip
            out["digests"].append(digest(model))
            out["losses"].append(losses)
            if args.checkpoint and rank == 0:
                fran.save_checkpoint(args.checkpoint, model)
            if args.stop_after is not None and model.epoch >= args.stop_after:
                break
    except fran.TrainingError as exc:
        out["error"] = f"TrainingError at step {exc.model.step}: {exc}"
    except Exception as exc:  # DistributedError and the like: every rank reports its own
        if os.environ.get("WORKER_TRACE"):
            raise
        print(json.dumps({"rank": rank, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(2)
    out["threads"] = fran.parallel.num_threads()
    out["final"] = digest(model)
    out["eval"] = evaluate(model, X, y, batch_size=50)
    if rank == 0:
        print(json.dumps(out), flush=True)
    elif "error" in out:
        print(json.dumps({"rank": rank, "error": out["error"]}), flush=True)


if __name__ == "__main__":
    main()
