"""Train a small conv net for --epochs epochs, checkpointing each epoch; resume from a checkpoint.

Run by tests/test_resume.py, which SIGKILLs it at random moments and restarts it until it prints
"done". Progress lines on stdout ("fresh", "resumed <epoch>", "start <epoch>", "saving <epoch>",
"saved <epoch>", "done") let the test aim its kills. `--pause half-written` or
`--pause before-replace` stops this process's first checkpoint write at that point (half the
bytes in the temporary file, or the file complete but not yet renamed) and prints "paused", so
the test can kill it exactly there.

    python tests/helpers/resume_worker.py --dir D --epochs E --seed S [--batch B] [--pause half-written]
                                  [--hold-after-saves K]

`--hold-after-saves K` makes the worker stop after its K-th checkpoint and wait to be killed, so
a kill aimed by the clock never finds the worker finished, however fast it ran meanwhile.

The batch size defaults to 16, which fran.parallel never splits; the test also runs it with
--batch 64 under FRAN_NUM_THREADS=2, so every step's batch is cut across two threads.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np

import fran

SAMPLES, SIDE, BATCH = 512, 20, 16


def network() -> fran.network:
    if os.environ.get("FRAN_RESUME_NET") == "v2":  # randomness, state, a residual block, a plugin
        from fran.layers import activation, batchnorm, dropout, residual

        return fran.network(
            [
                fran.conv2d(k=3, channels=8),
                batchnorm(),
                activation("relu"),
                residual([fran.conv2d(k=3, channels=8, padding=1), batchnorm(), dropout(0.2)]),
                fran.registry.get("avgpooling")(k=2),
                fran.flatten(),
                dropout(0.3),
                fran.dense(10),
                fran.softmax(),
            ]
        )
    return fran.network(
        [
            fran.conv2d(k=3, channels=16, activation="relu"),
            fran.maxpooling(2),
            fran.conv2d(k=3, channels=16, activation="relu"),
            fran.flatten(),
            fran.dense(10),
            fran.softmax(),
        ]
    )


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 10-class images: class templates plus noise (fixed, independent of --seed)."""
    rng = np.random.default_rng(1234)
    templates = rng.random((10, 1, SIDE, SIDE), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    noise = rng.normal(0.0, 0.3, (SAMPLES, 1, SIDE, SIDE)).astype(np.float32)
    return templates[y] + noise, y


def pause_once(where: str) -> None:
    """Make this process's first checkpoint write stop at `where` until the test kills it."""
    state = {"armed": True}

    def stop() -> None:
        if state["armed"]:
            state["armed"] = False
            print("paused", where, flush=True)
            time.sleep(60)

    if where == "half-written":
        real_savez = np.savez

        def half_written(fh, *args, **kwargs):
            buffer = io.BytesIO()
            real_savez(buffer, *args, **kwargs)
            data = buffer.getvalue()
            fh.write(data[: len(data) // 2])
            fh.flush()
            stop()
            fh.write(data[len(data) // 2 :])

        np.savez = half_written
    else:
        real_replace = os.replace

        def before_replace(src, dst):
            stop()
            real_replace(src, dst)

        os.replace = before_replace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--pause", choices=["half-written", "before-replace"])
    parser.add_argument("--hold-after-saves", type=int, default=None)
    args = parser.parse_args()
    if args.pause:
        pause_once(args.pause)
    X, y = dataset()
    found = fran.load_checkpoint(args.dir) if os.path.isdir(args.dir) else None
    if found is None:
        model, history = fran.init_weights(network(), SIDE, SIDE, seed=args.seed), []
        print("fresh", flush=True)
    else:
        model, meta = found
        history = meta["history"]
        print("resumed", model.epoch, flush=True)
    optimizer = fran.adam(1e-3)
    saves = 0
    while model.epoch < args.epochs:
        print("start", model.epoch, flush=True)
        losses: list[float] = []
        model = fran.train_nn(
            model, X, y, optimizer=optimizer, batch_size=args.batch,
            on_batch=lambda i, value, losses=losses: losses.append(float(value)),
        )  # fmt: skip
        history.append(sum(losses) / len(losses))
        print("saving", model.epoch, flush=True)
        fran.save_checkpoint(args.dir, model, metadata={"history": history})
        print("saved", model.epoch, flush=True)
        saves += 1
        if saves == args.hold_after_saves:  # wait here to be killed: a bounded progress per kill
            print("held", flush=True)
            time.sleep(600)
    print("done", flush=True)


if __name__ == "__main__":
    main()
