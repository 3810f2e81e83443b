"""Shared machinery for the example scripts: command line, train loop with resume, reports.

Each example describes itself as an `Example` (network, data loader, class names) and calls
`run(example, argv)`. `run` trains one epoch at a time with `fran.train_nn`, scores the model on
the test set after every epoch, saves a checkpoint (model + history + args) after every epoch,
and at the end writes into `--out`: learning_curve.png, confusion_matrix.png and
misclassified.png (classifiers) or reconstructions.png (autoencoders), metrics.json and model.npz.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    from tqdm import tqdm
except ModuleNotFoundError as exc:  # fran alone was installed, without the examples' extras
    MISSING_EXTRAS: ModuleNotFoundError | None = exc  # run() stops with how to install them;
    # importing an example still works (its build() and optimizer(): tests/helpers/peer_twins.py)
else:
    MISSING_EXTRAS = None
    matplotlib.use("Agg")  # files only, never a window (fine before any figure exists)

import fran
import fran.io
import fran.tree
from fran.layers import _init

DIGITS = tuple(str(d) for d in range(10))
FASHION = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

N_TRAIN, N_TEST = 60_000, 10_000  # MNIST's and Fashion-MNIST's split sizes

Loader = Callable[[str, "int | None"], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class Example:
    """What differs between the examples.

    name: the script's name (default output folder runs/<name>).
    title: a human title for plots and logs, e.g. "LeNet-5 on MNIST".
    build: returns the untrained network spec.
    load: load(split, n) -> (X (N, 1, 28, 28) float32, labels (N,) int); n=None means all.
    class_names: the classes' names for a classifier; None for an autoencoder (target = input).
    init: the default of --init: a weight-init scheme for init_weights, or "default" for fran's
        choice by activation (He for relu, Glorot otherwise).
    optimizer: optimizer(args, steps_per_epoch) -> the Optimizer for every epoch (a schedule in it
        counts the model's steps, so it resumes where it stopped); None means Adam(--lr).
    optimizer_label: how the plots' subtitles name the optimizer, before "lr <--lr>".
    epochs, batch_size, lr: the defaults of --epochs, --batch-size and --lr.
    validation_split: hold out this fraction of the n-train images, the LAST ones (as Keras'
        validation_split), and score them every epoch (val_loss, val_accuracy); 0 = none.
    """

    name: str
    title: str
    build: Callable[[], fran.network]
    load: Loader
    class_names: tuple[str, ...] | None = None
    init: str = "default"
    optimizer: Callable[[argparse.Namespace, int], fran.Optimizer] | None = None
    optimizer_label: str = "Adam"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    validation_split: float = 0.0

    @property
    def is_classifier(self) -> bool:
        return self.class_names is not None


class UsageError(RuntimeError):
    """A command-line choice that cannot work; `cli` prints it without a traceback."""


class OutOfMemory(RuntimeError):
    """A MemoryError during the run, said with what survives (the last checkpoint)."""


# What `cli` prints as one line, `<script>: error: <first line of the message>` with exit
# status 1 (argparse's style; argparse's own errors exit with 2). --verbose prints the chained
# traceback first. Anything else is a bug in fran or the script and keeps its traceback.
REPORTED = (UsageError, OutOfMemory, MemoryError, fran.CheckpointError, fran.TrainingError, OSError)

# every file a run writes into --out (report() and save_checkpoint)
OUTPUT_FILES = (
    "learning_curve.png", "confusion_matrix.png", "misclassified.png", "reconstructions.png",
    "metrics.json", "model.npz", "model.onnx", fran.io.CHECKPOINT_NAME,
)  # fmt: skip


class ResumeError(UsageError):
    """The checkpoint in --out was made by a different run (seed, network or n-train)."""


class RootError(UsageError):
    """Under --distributed: what rank 0 failed at (writing --out), raised on the other ranks."""


# --------------------------------------------------------------------------- command line


def parse_args(example: Example, argv: list[str] | None = None) -> argparse.Namespace:
    """The shared command line; --out defaults to runs/<example name>."""
    p = argparse.ArgumentParser(
        prog=f"{example.name}.py",
        description=f"Train {example.title} with fran and write plots, metrics and the model.",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=example.epochs,
        help=f"total epochs to train (default {example.epochs})",
    )
    p.add_argument("--seed", type=int, default=0, help="weights and shuffle seed (default 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / example.name,
        help=f"output folder (default runs/{example.name})",
    )
    p.add_argument(
        "--n-train",
        type=int,
        default=10000,
        help="train on the FIRST n training images (default 10000)",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=None,
        help="score on the first n test images (default: all 10000)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=example.batch_size,
        help=f"mini-batch size (default {example.batch_size})",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=example.lr,
        help=f"{example.optimizer_label} learning rate (default {example.lr:g})",
    )
    p.add_argument(
        "--init",
        default=example.init,
        metavar="SCHEME",
        help="weight init: 'default' (fran's choice by activation), 'torch' (PyTorch's "
        f"defaults), 'glorot_uniform', 'he_normal', ... (default: {example.init})",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --out (up to --epochs in total)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="train on every rank of an MPI job (mpiexec -n N python ...; needs fran[mpi]): "
        "the same model as one process; rank 0 prints and writes",
    )
    p.add_argument(
        "--pieces",
        type=_pieces,
        default=None,
        help="cut each batch into this many pieces (default: FRAN_PIECES, else 2); the model "
        "depends on it, not on the threads or ranks",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="on an error, print the whole chained traceback, not just its one-line message",
    )
    args = p.parse_args(argv)
    for name in ("epochs", "n_train", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0 (NumPy's seeds are non-negative), got {args.seed}")
    schemes = ("default", *_init.SCHEMES, *_init.ALIASES)
    if args.init not in schemes:
        p.error(f"--init must be one of {', '.join(schemes)}; got {args.init!r}")
    if args.n_test is not None and args.n_test < 1:
        p.error(f"--n-test must be >= 1, got {args.n_test}")
    if args.n_train > N_TRAIN:
        p.error(f"--n-train must be <= {N_TRAIN} (the training set's size), got {args.n_train}")
    if args.n_test is not None and args.n_test > N_TEST:
        p.error(f"--n-test must be <= {N_TEST} (the test set's size), got {args.n_test}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        p.error(f"--lr must be a finite number > 0, got {args.lr}")
    problem = out_problem(args.out)
    if problem:
        p.error(problem)
    return args


def _pieces(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


# fran.train_nn and fran.evaluate_nn, or fran.distributed's under --distributed (run() sets them)
_backend = {"train_nn": fran.train_nn, "evaluate_nn": fran.evaluate_nn, "root": True, "mpi": None}


def _use_backend(args: argparse.Namespace) -> None:
    global REPORTED
    if not args.distributed:
        _backend.update(train_nn=fran.train_nn, evaluate_nn=fran.evaluate_nn, root=True, mpi=None)
        return
    try:
        import fran.distributed as dist
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"--distributed needs mpi4py and an MPI ({exc}); pip install 'fran[mpi]'"
        ) from None
    _backend.update(
        train_nn=dist.train_nn, evaluate_nn=dist.evaluate_nn, root=dist.is_root(), mpi=dist
    )
    if dist.DistributedError not in REPORTED:  # ranks that differ, or a dead one: one line too
        REPORTED = (*REPORTED, dist.DistributedError)


def root_outcome(error: BaseException | None, what: str) -> None:
    """Raise rank 0's failure at `what` (None: it went well) on every rank. Under --distributed
    only rank 0 writes, so without this a full disk there would stop rank 0 alone and leave the
    others waiting out their next collective's deadline; with it every rank stops at once with
    rank 0's message. One broadcast (its length, then its text), polled against
    fran.distributed's deadline (FRAN_MPI_TIMEOUT); past it, the job is aborted."""
    dist = _backend["mpi"]
    if dist is None:
        if error is not None:
            raise error
        return
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    text = b"" if error is None else one_line(error).encode()
    size = np.array([len(text)], np.int64)
    _poll(comm, comm.Ibcast(size, root=0), what)
    if size[0]:
        buf = np.frombuffer(text, np.uint8).copy() if comm.Get_rank() == 0 else None
        buf = np.empty(int(size[0]), np.uint8) if buf is None else buf
        _poll(comm, comm.Ibcast(buf, root=0), what)
        if error is None:
            raise RootError(buf.tobytes().decode())  # rank 0's own line, on every rank
    if error is not None:
        raise error


def _poll(comm, request, what: str) -> None:
    dist = _backend["mpi"]
    timeout = float(os.environ.get(dist.TIMEOUT_ENV, "").strip() or dist.DEFAULT_TIMEOUT)
    end, pause = time.monotonic() + timeout, 0.0
    while not request.Test():
        if time.monotonic() > end:
            print(
                f"{Path(sys.argv[0]).name}: error: rank {comm.Get_rank()} waited {timeout:g} s "
                f"for rank 0 to say how {what} went; stopping the job",
                file=sys.stderr,
                flush=True,
            )
            comm.Abort(1)
        time.sleep(pause)
        pause = min(0.01, pause * 2 or 1e-4)


_held: dict = {}  # --out folder -> its open fd, locked by this process (until it exits)


def hold_out(out: Path) -> None:
    """Make --out and hold an exclusive lock on it for the run (flock on the folder, released
    by the kernel when the process ends, however it ends), so that a second run given the same
    --out is refused before it trains instead of the two interleaving their files. Where the
    file system has no flock (some network mounts) the run goes on unlocked."""
    try:
        import fcntl
    except ModuleNotFoundError:  # not POSIX
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(out)
        if key in _held:  # this process already holds it (main() called again in-process)
            return
        fd = os.open(out, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot make or open the folder ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(
            f"--out {out}: another run is writing into it; wait for it to end, or give another "
            "--out"
        ) from None
    except OSError:
        os.close(fd)
        return
    _held[key] = fd


def out_problem(out: Path) -> str | None:
    """Why the run could not write its files into `out`, or None: checked before any training,
    so a run is never lost to an output folder that cannot be written at its end."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is an existing file; give a folder (it is made if missing)"
    clashes = [name for name in OUTPUT_FILES if (out / name).is_dir()]
    if clashes:
        return f"--out {out}: {', '.join(clashes)} in it are folders, where the run writes files"
    base = out.absolute()
    while not base.exists():  # the nearest existing folder, in which `out` would be made
        base = base.parent
    if not base.is_dir():
        return f"--out {out}: cannot make the folder, {base} is a file"
    try:  # the one honest test (permissions, read-only mounts, root's rights): write a file
        tempfile.TemporaryFile(dir=base).close()
    except OSError as exc:
        return f"--out {out}: cannot write in {base} ({exc.strerror or exc})"
    return None


def args_record(args: argparse.Namespace) -> dict:
    """The args as JSON-ready values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


# --------------------------------------------------------------------------- data and model


def load_data(example: Example, args: argparse.Namespace) -> dict:
    """Train on the first n-train training images, test on the first n-test (all) test images."""
    try:
        X, labels = example.load("train", args.n_train)
        Xt, labels_t = example.load("test", args.n_test)
    except FileNotFoundError as exc:  # not fetched yet: the first line says what to run
        raise UsageError(str(exc)) from exc
    y, yt = (labels, labels_t) if example.is_classifier else (X, Xt)
    data = {"X": X, "y": y, "Xt": Xt, "yt": yt, "labels_t": labels_t}
    if example.validation_split:
        return data | split_validation(data, example.validation_split)
    return data


def split_validation(data: dict, fraction: float) -> dict:
    """Hold out the LAST fraction of the training images (Keras' validation_split, unshuffled)."""
    n_val = int(len(data["X"]) * fraction)  # Keras: int(n * validation_split) at the end
    if n_val < 1 or n_val >= len(data["X"]):
        raise UsageError(
            f"validation_split {fraction:g} of {len(data['X'])} training images leaves "
            f"{n_val} for validation: use a larger --n-train"
        )
    cut = len(data["X"]) - n_val
    return {
        "X": data["X"][:cut],
        "y": data["y"][:cut],
        "Xv": data["X"][cut:],
        "yv": data["y"][cut:],
    }


def fresh_model(example: Example, args: argparse.Namespace) -> fran.Model:
    scheme = None if args.init == "default" else args.init
    try:
        return fran.init_weights(example.build(), 28, 28, scheme=scheme, seed=args.seed)
    except ValueError as exc:
        if scheme is None:
            raise
        raise UsageError(f"--init {args.init!r}: {exc}") from None


def check_resumable(example: Example, found: tuple, fresh: fran.Model, args, where) -> None:
    """Refuse a checkpoint from a different run, saying what differs and what to do."""
    model, metadata = found
    saved = metadata.get("args", {})
    problems = []
    if metadata.get("example") not in (None, example.name):
        problems.append(f"it belongs to example {metadata.get('example')!r}")
    if model.seed != args.seed:
        problems.append(f"it was trained with --seed {model.seed}, not {args.seed}")
    if saved.get("n_train") != args.n_train:
        problems.append(f"it was trained with --n-train {saved.get('n_train')}, not {args.n_train}")
    details = ""
    if model.spec.layers != fresh.spec.layers:
        problems.append("its network differs from this script's (architecture or --init)")
        details = f"\n    checkpoint: {list(model.spec.layers)}\n    this run:   {list(fresh.spec.layers)}"
    if problems:
        raise ResumeError(
            f"cannot resume from {where}: "
            + "; ".join(problems)
            + ". Use another --out, or drop --resume to start over (which overwrites it)."
            + details
        )


def start(example: Example, args: argparse.Namespace, say) -> tuple[fran.Model, list[dict]]:
    """A fresh model and empty history, or (with --resume) the checkpoint's model and history."""
    fresh = fresh_model(example, args)
    if not args.resume:
        if (args.out / fran.io.CHECKPOINT_NAME).exists():
            say(f"note: starting over; this replaces the checkpoint in {args.out}")
        return fresh, []
    found = fran.io.load_checkpoint(args.out) if args.out.exists() else None
    if found is None:
        say(f"--resume: no checkpoint in {args.out}; starting from scratch")
        return fresh, []
    model, metadata = found[0], found[1] or {}
    check_resumable(example, (model, metadata), fresh, args, args.out / "checkpoint.npz")
    history = list(metadata.get("history", []))
    say(f"resuming from {args.out / 'checkpoint.npz'} at epoch {model.epoch} (step {model.step})")
    return model, history


# --------------------------------------------------------------------------- training


def progress(model: fran.Model, args: argparse.Namespace, n_batches: int) -> tuple:
    """An epoch's progress bar and the on_batch callback that feeds it the batch losses:
    (bar, on_batch, losses), the list filling as train_nn calls on_batch."""
    losses: list[float] = []
    bar = tqdm(
        total=n_batches,
        desc=f"epoch {model.epoch + 1}/{args.epochs}",
        unit="batch",
        leave=False,
        file=sys.stdout,
        disable=True if args.quiet else None,
    )

    def on_batch(index: int, loss: float) -> None:
        losses.append(loss)
        bar.set_postfix_str(f"loss {np.mean(losses[-50:]):.4f}", refresh=False)
        bar.update(1)

    return bar, on_batch, losses


def train_epoch(model: fran.Model, data: dict, args: argparse.Namespace, example=None) -> tuple:
    """One epoch with a progress bar; returns (model, mean batch loss, seconds)."""
    n_batches = -(-len(data["X"]) // args.batch_size)
    bar, on_batch, losses = progress(model, args, n_batches)

    make = None if example is None else example.optimizer
    optimizer = fran.adam(args.lr) if make is None else make(args, n_batches)
    t0 = time.perf_counter()
    try:
        model = _backend["train_nn"](
            model,
            data["X"],
            data["y"],
            optimizer=optimizer,
            batch_size=args.batch_size,
            on_batch=on_batch,
            pieces=args.pieces,
        )
    finally:
        bar.close()
    return model, float(np.mean(losses)), time.perf_counter() - t0


def score(model: fran.Model, data: dict) -> dict:
    """Test loss (and accuracy) on the test set, and the seconds it took."""
    t0 = time.perf_counter()
    result = _backend["evaluate_nn"](model, data["Xt"], data["yt"])
    result = {"test_loss": float(result["loss"])} | (
        {"test_accuracy": float(result["accuracy"])} if "accuracy" in result else {}
    )
    return result | {"eval_seconds": time.perf_counter() - t0}


def score_validation(model: fran.Model, data: dict) -> dict:
    """Loss and accuracy on the held-out validation images (none: {})."""
    if "Xv" not in data:
        return {}
    result = _backend["evaluate_nn"](model, data["Xv"], data["yv"])
    return {"val_loss": float(result["loss"])} | (
        {"val_accuracy": float(result["accuracy"])} if "accuracy" in result else {}
    )


def epoch_line(entry: dict, epochs: int) -> str:
    width = len(str(epochs))
    parts = [
        f"epoch {entry['epoch']:>{width}}/{epochs}",
        f"train loss {entry['train_loss']:.4f}",
        f"test loss {entry['test_loss']:.4f}",
    ]
    if "test_accuracy" in entry:
        parts.append(f"test acc {100 * entry['test_accuracy']:6.2f}%")
    if "val_loss" in entry:
        parts.append(f"val loss {entry['val_loss']:.4f}")
    if "val_accuracy" in entry:
        parts.append(f"val acc {100 * entry['val_accuracy']:6.2f}%")
    parts.append(f"{entry['train_seconds']:5.1f} s (+{entry['eval_seconds']:.1f} s test)")
    return "  ".join(parts)


def memory_record() -> dict:
    """The process's peak resident memory so far (getrusage) and its resident memory now, in MiB.

    Recorded after every epoch: a flat profile has the same peak after the second epoch as after
    the last (benchmarks/long_runs.py reads them).
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return {}
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    record = {"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20}
    try:  # resident pages now (Linux): the second field of /proc/self/statm
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        record["rss_mib"] = pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return record


def metadata_for(example: Example, args, history: list[dict]) -> dict:
    return {"example": example.name, "args": args_record(args), "history": history}


def run(example: Example, argv: list[str] | None = None) -> dict:
    """Parse argv, train (or resume) to --epochs, write the reports; returns metrics.json's dict."""
    if MISSING_EXTRAS is not None:
        sys.exit(
            f"error: the examples need matplotlib and tqdm ({MISSING_EXTRAS}); install them with\n"
            "    python3 -m pip install '.[examples]'    (from the fran checkout)"
        )
    args = parse_args(example, argv)
    try:
        return _run(example, args)
    except REPORTED:
        if args.verbose:  # the whole chain, before cli's one line
            traceback.print_exc(file=sys.stderr)
        raise


def _run(example: Example, args: argparse.Namespace) -> dict:
    fran.memory.keep_freed_memory()  # freed arrays stay for the next batch (fran/memory.py)
    _use_backend(args)
    root = _backend["root"]  # under --distributed only rank 0 prints and writes
    args.quiet = args.quiet or not root
    say = (lambda *a: None) if args.quiet else functools.partial(print, flush=True)
    locked = None
    if root:
        try:
            hold_out(args.out)
        except UsageError as exc:
            locked = exc
    root_outcome(locked, "locking --out")
    model, history = start(example, args, say)
    if _backend["mpi"] is not None and model.opt_state is not None:
        # every rank read the checkpoint: the same one? (not asked of a fresh model, whose
        # opt_state None model_digest hashes as a pointer, different on every rank)
        _backend["mpi"].check_same_model(model)
    data = load_data(example, args)
    if model.epoch >= args.epochs:
        say(f"the checkpoint has {model.epoch} epochs, --epochs is {args.epochs}: nothing to train")
    if not history:
        say(f"{example.title}: {len(data['X'])} training images, {len(data['Xt'])} test images")
        say(fran.summary(model))
    try:
        while model.epoch < args.epochs:
            model, train_loss, seconds = train_epoch(model, data, args, example)
            entry = {"epoch": model.epoch, "train_loss": train_loss} | score(model, data)
            entry |= score_validation(model, data)
            entry["train_seconds"] = seconds
            entry |= memory_record()
            history.append(entry)
            say(epoch_line(entry, args.epochs))
            failed = None
            if root:
                meta = metadata_for(example, args, history)
                try:
                    fran.io.save_checkpoint(args.out, model, metadata=meta)
                except Exception as exc:  # a full disk: every rank stops, with this message
                    failed = exc
            root_outcome(failed, "writing the checkpoint")
    except KeyboardInterrupt:
        say(f"\ninterrupted; continue later with --resume --out {args.out}")
        raise
    except MemoryError as exc:
        raise OutOfMemory(out_of_memory(args, model, f"in epoch {model.epoch + 1}", exc)) from exc
    if not root:
        return {"final": dict(history[-1]) if history else {}}
    try:
        return report(example, model, data, args, history, say)
    except MemoryError as exc:
        raise OutOfMemory(out_of_memory(args, model, "writing the reports", exc)) from exc


def out_of_memory(args, model: fran.Model, where: str, exc: MemoryError) -> str:
    saved = (
        f"the checkpoint in {args.out} (epoch {model.epoch}) is intact: continue with --resume"
        if model.epoch
        else "no epoch had finished, so there is no checkpoint"
    )
    what = f" ({exc})" if str(exc) else ""
    return f"out of memory {where}{what}; {saved} (a smaller --batch-size needs less memory)"


def one_line(exc: BaseException) -> str:
    """An error's message as one line: its first line, with a pointer to the rest."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory: {text}"
    first, _, rest = text.partition("\n")
    return first + (" (--verbose for the details)" if rest.strip() else "")


def cli(main: Callable[[list[str] | None], dict]) -> None:
    """Run a script's main(); a failure it can explain (bad --init, missing data, a refused
    --resume, a full disk, out of memory) is one line, `<script>: error: ...`, exit status 1."""
    try:
        main(None)
    except REPORTED as exc:
        print(f"{Path(sys.argv[0]).name}: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --------------------------------------------------------------------------- reports


def report(example: Example, model, data: dict, args, history: list[dict], say) -> dict:
    """Write the plots, metrics.json and model.npz into args.out; returns the metrics."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    final = dict(history[-1]) if history else score(model, data)
    plot_learning_curve(example, history, args, out / "learning_curve.png")
    if example.is_classifier:
        pictures, extra = classifier_reports(example, model, data, out)
    else:
        plot_reconstructions(example, model, data, final["test_loss"], out / "reconstructions.png")
        pictures, extra = ["reconstructions.png"], {}
    train_s = [h["train_seconds"] for h in history]
    metrics = (
        {
            "example": example.name,
            "title": example.title,
            "final": final,
            "history": history,
            "seconds": {
                "train": float(sum(train_s)),
                "eval": float(sum(h["eval_seconds"] for h in history)),
                "mean_train_epoch": float(np.mean(train_s)) if train_s else None,
            },
            "args": args_record(args),
            "n_train": len(data["X"]),
            "n_test": len(data["Xt"]),
        }
        | ({"n_val": len(data["Xv"])} if "Xv" in data else {})
        | {
            "n_params": int(sum(a.size for a in fran.tree.tree_leaves(model.params))),
        }
        | extra
    )
    fran.io.write_json(out / "metrics.json", metrics)
    fran.save(out / "model.npz", model, metadata=metadata_for(example, args, history))
    files = ["learning_curve.png", *pictures, "metrics.json", "model.npz", "checkpoint.npz"]
    files += write_onnx(model, out / "model.onnx", say)
    say(final_line(final))
    say(f"wrote to {out}/: " + ", ".join(files))
    return metrics


def write_onnx(model, path: Path, say) -> list[str]:
    """model.onnx beside model.npz when the onnx extra is installed (`pip install '.[onnx]'`):
    the trained network for ONNX Runtime, Netron or PyTorch (README: ONNX)."""
    try:
        import fran.onnx
    except ImportError:
        say("model.onnx not written: the onnx package is not installed (pip install '.[onnx]')")
        return []
    fran.onnx.export(model, path)
    return [path.name]


def classifier_reports(example: Example, model, data: dict, out: Path) -> tuple[list, dict]:
    """The confusion matrix and misclassified pictures; their file names and extra metrics."""
    probs = fran.predict(model, data["Xt"])
    pred = probs.argmax(axis=1)
    cm = confusion(data["yt"], pred, len(example.class_names))
    plot_confusion(example, cm, out / "confusion_matrix.png")
    plot_misclassified(example, data, pred, probs, out / "misclassified.png")
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    extra = {
        "confusion_matrix": cm.tolist(),
        "per_class_accuracy": dict(zip(example.class_names, recall.tolist(), strict=True)),
    }
    return ["confusion_matrix.png", "misclassified.png"], extra


def final_line(final: dict) -> str:
    text = f"final: test loss {final['test_loss']:.5f}"
    if "test_accuracy" in final:
        text += f", test accuracy {100 * final['test_accuracy']:.2f}%"
    return text


def confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """cm[i, j] = number of test images of class i predicted as class j."""
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def _subtitle(args, example: Example | None = None) -> str:
    init = "" if args.init == "default" else f", init {args.init}"
    label = "Adam" if example is None else example.optimizer_label
    return (
        f"seed {args.seed}, first {args.n_train:,} training images, batch {args.batch_size}, "
        f"{label} lr {args.lr:g}{init}"
    )


def _plain_log_ticks(ax) -> None:
    """Log-scale y ticks as plain numbers (0.01, 0.02, 0.05), not 2 x 10^-2."""
    major = FuncFormatter(lambda v, _: f"{v:g}")
    minor = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
    ax.yaxis.set_major_formatter(major)
    ax.yaxis.set_minor_formatter(minor)


def plot_learning_curve(example: Example, history: list[dict], args, path: Path) -> None:
    """Train and test loss per epoch, and test accuracy for classifiers."""
    epochs = [h["epoch"] for h in history]
    final = history[-1] if history else {}
    panels = 2 if example.is_classifier else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels + (panels == 1), 4.5), squeeze=False)
    ax = axes[0, 0]
    loss_name = "cross-entropy" if example.is_classifier else "MSE"
    test_label = f"test (final {final['test_loss']:.4g})" if final else "test"
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train (mean over batches)")
    ax.plot(epochs, [h["test_loss"] for h in history], "s-", label=test_label)
    if history and "val_loss" in final:
        ax.plot(epochs, [h["val_loss"] for h in history], "^--", label="validation")
    ax.set(xlabel="epoch", ylabel=f"{loss_name} loss", title="Loss")
    if not example.is_classifier:
        ax.set(yscale="log", title="Loss (log scale)")
        _plain_log_ticks(ax)
    ax.legend()
    if example.is_classifier:
        ax = axes[0, 1]
        ax.plot(epochs, [100 * h["test_accuracy"] for h in history], "o-", color="tab:green")
        if history and "val_accuracy" in final:
            ax.plot(epochs, [100 * h["val_accuracy"] for h in history], "^--", label="validation")
            ax.legend(["test", "validation"])
        title = f"Test accuracy (final {100 * final['test_accuracy']:.2f}%)" if final else ""
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=title)
    for a in axes.flat:
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:
            a.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    fig.suptitle(f"{example.title}: learning curve\n{_subtitle(args, example)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(example: Example, cm: np.ndarray, path: Path) -> None:
    """A k x k confusion matrix with class names and counts in each cell."""
    names = example.class_names
    k = len(names)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="test images")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if cm[i, j] > threshold else ("black" if cm[i, j] else "lightgray")
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted class", ylabel="true class")
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(
        f"{example.title}: confusion matrix\n{cm.sum():,} test images, accuracy {accuracy:.2%}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def image_mosaic(ax, images: np.ndarray, cols: int, *, above: int = 14, gap: int = 4) -> list:
    """Draw (n, h, w) images as one picture on `ax` (fast: one imshow, not n axes).

    Each tile has `above` blank pixels over it for a label and `gap` pixels around it; returns
    each tile's (x centre, y top) in the axes' data coordinates, for placing labels.
    """
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    cell_w, cell_h = w + 2 * gap, h + above + gap
    canvas = np.full((rows * cell_h, cols * cell_w), np.nan)
    spots = []
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        x0, y0 = c * cell_w + gap, r * cell_h + above
        canvas[y0 : y0 + h, x0 : x0 + w] = image
        spots.append((x0 + w / 2 - 0.5, y0 - 0.5))
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    return spots


def plot_misclassified(example: Example, data, pred, probs, path: Path, n: int = 25) -> None:
    """A grid of the first n misclassified test images with their true and predicted labels."""
    names = example.class_names
    true = data["yt"]
    wrong = np.flatnonzero(pred != true)
    shown = wrong[:n]
    cols = 5
    rows = max(1, -(-len(shown) // cols))
    fig = plt.figure(figsize=(8.2, 1.85 * rows + 0.7))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.7 / fig.get_figheight()))
    spots = image_mosaic(ax, data["Xt"][shown, 0], cols, above=11)
    if not len(shown):
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", transform=ax.transAxes)
    for (x, y), i in zip(spots, shown, strict=True):
        ax.text(x, y - 5.5, f"#{i} true: {names[true[i]]}", ha="center", va="bottom", fontsize=9)
        ax.text(
            x, y - 1, f"pred: {names[pred[i]]} ({_percent(probs[i, pred[i]])})",
            ha="center", va="bottom", fontsize=9, color="firebrick",
        )  # fmt: skip
    head = f"first {len(shown)} of {len(wrong):,} misclassified test images"
    fig.suptitle(
        f"{example.title}: {head}\n({len(wrong) / max(len(true), 1):.2%} test error; "
        "in brackets: the predicted class's probability)",
        fontsize=11,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _percent(p: float) -> str:
    """A probability as a whole percentage that never rounds up to a false 100%."""
    return f"{p:.0%}" if p < 0.995 else ">99%"


def reconstruction_picks(labels: np.ndarray, n: int = 10) -> np.ndarray:
    """The first test image of each class 0..9 (then the first others), n indices."""
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(10) if (labels == c).any()]
    rest = [i for i in range(len(labels)) if i not in picks]
    return np.array((picks + rest)[:n])


def plot_reconstructions(example: Example, model, data, test_mse, path: Path, n=10) -> None:
    """Test originals (top row) over their reconstructions (bottom row), with per-image MSE."""
    idx = reconstruction_picks(data["labels_t"], n)
    originals = data["Xt"][idx, 0]
    recon = fran.predict(model, data["Xt"][idx])[:, 0]
    cols = len(idx)
    fig = plt.figure(figsize=(1.1 * cols + 1.4, 3.1))
    ax = fig.add_axes((0.12, 0.02, 0.87, 0.78))
    spots = image_mosaic(ax, np.concatenate([originals, recon]), cols, above=10)
    for j, i in enumerate(idx):
        x, y = spots[j]
        ax.text(x, y - 1, f"test #{i}", ha="center", va="bottom", fontsize=9)
        x, y = spots[cols + j]
        err = float(np.mean((recon[j] - originals[j]) ** 2))
        ax.text(x, y - 1, f"MSE {err:.4f}", ha="center", va="bottom", fontsize=9)
    for row, label in ((0, "original"), (1, "reconstruction")):
        x, y = spots[row * cols]
        ax.text(x - 17, y + 14, label, ha="right", va="center", fontsize=11)
    fig.suptitle(
        f"{example.title}: test images (top) and their reconstructions (bottom)\n"
        f"test MSE {test_mse:.5f} over {len(data['Xt']):,} images",
        fontsize=11,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
