"""fran versus PyTorch CPU, side by side, on the same work with the same thread count.

    python benchmarks/bench.py [--repeats N] [--threads N] [--out FILE.json] [--quick]
                               [--only ITEM,...] [--n-train N] [--n-train-peers N]
    python benchmarks/bench.py --blas-settings both   # twice, in two children: the machine's
                                   # OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, then both unset
    python benchmarks/bench.py --profile NAME|all     # where one fran epoch's time goes

Items (ITEMS, in the order run): the seed's three networks trained one epoch (LeNet-5, the
Fashion-MNIST CNN, the conv autoencoder), LeNet-5 inference, `import` time, the peak resident
memory of a LeNet-5 epoch, LeNet-5 on 60,000 images in batches of 256, LeNet-5 and the
Fashion-MNIST CNN while a child process keeps one core busy, and the three peer networks of
examples/ (keras_mnist, pytorch_mnist, resnet_fmnist: dropout, batch norm, residual blocks), one
epoch of --n-train-peers images each with the example's optimizer and batch size, the ResNet
also with one core busy. Timed runs alternate (fran 1, torch 1, fran 2, ...), each epoch after
one untimed warm-up batch; data is synthetic (uniform images in [0, 1], random labels, fixed
seed), float32. Import time and peak
memory are measured in fresh child processes; the fran child never imports torch. The ratio is
fran / PyTorch (lower is better). Each training item also gets its floating-point work
(flops.py) and the GFLOP/s both frameworks reach, beside this machine's peak (peak.py: NumPy's
float32 product on one thread and on all). Results go to a JSON file, written atomically after
every item, and a Markdown table is printed at the end.
"""

# ruff: noqa: E402  (the thread-count variables must be set before numpy or torch is imported)

import os
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FRAN_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> int:
    """--threads N (or --threads=N) if given, else os.cpu_count(): read before argparse runs."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.partition("=")[2]
        else:
            continue
        try:
            return max(1, int(value))
        except ValueError:
            break  # argparse reports it
    return os.cpu_count() or 1


if __name__ == "__main__":
    THREADS = _threads_from_argv(sys.argv[1:])
    for _var in THREAD_VARS:
        os.environ[_var] = str(THREADS)

import argparse
import contextlib
import datetime
import gc
import importlib.util
import json
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXTRA_PATH = [] if importlib.util.find_spec("fran") else [str(REPO)]  # run from a checkout
sys.path[:0] = EXTRA_PATH
sys.path.insert(0, str(REPO / "tests"))  # the twin networks live with the tests that check them

import flops
import peak
import profile_kinds
from helpers import fran_models as fm
from machine import (
    BLAS_VARS,
    blas_label,
    blas_thread_limit,
    cpu_model,
    machine_info,
    openblas_runtime,
)

import fran
import fran.kernels

ITEMS = {  # key: (label, target fran / PyTorch: the performance issue's table), in run order
    "lenet5_train": ("LeNet-5 train, 1 epoch", 0.8),
    "fmnist_train": ("Fashion-MNIST CNN train, 1 epoch", 0.8),
    "autoencoder_train": ("Conv autoencoder train, 1 epoch", 0.8),
    "lenet5_infer": ("LeNet-5 inference", 0.5),
    "import": ("import time", 0.1),
    "peak_rss": ("Peak RSS, LeNet-5 1-epoch run", 0.5),
    "lenet5_60k_b256": ("LeNet-5 train, 1 epoch, batch 256", 0.8),
    "lenet5_busy": ("LeNet-5 train, 1 epoch, one core busy", 0.5),
    "fmnist_busy": ("Fashion-MNIST CNN train, 1 epoch, one core busy", 0.5),
    "keras_mnist_train": ("keras_mnist train, 1 epoch", 1.0),
    "pytorch_mnist_train": ("pytorch_mnist train, 1 epoch", 1.0),
    "resnet_fmnist_train": ("resnet_fmnist train, 1 epoch", 1.0),
    "resnet_busy": ("resnet_fmnist train, 1 epoch, one core busy", 0.5),
}


@dataclass(frozen=True)
class TrainWork:
    """A training item: which network, on how many images ("n_train", "n_train_peers" or
    "n_large": the argument holding the count), in which batches (None: --batch-size for the
    seed's networks, the example's own for a peer), with one core kept busy or not."""

    network: str
    images: str = "n_train"
    batch: int | None = None
    busy: bool = False

    @property
    def peer(self) -> bool:
        return self.network in fm.PEERS


TRAIN_ITEMS = {
    "lenet5_train": TrainWork("lenet5"),
    "fmnist_train": TrainWork("fmnist_cnn"),
    "autoencoder_train": TrainWork("autoencoder"),
    "lenet5_60k_b256": TrainWork("lenet5", images="n_large", batch=256),
    "lenet5_busy": TrainWork("lenet5", busy=True),
    "fmnist_busy": TrainWork("fmnist_cnn", busy=True),
    "keras_mnist_train": TrainWork("keras_mnist", images="n_train_peers"),
    "pytorch_mnist_train": TrainWork("pytorch_mnist", images="n_train_peers"),
    "resnet_fmnist_train": TrainWork("resnet_fmnist", images="n_train_peers"),
    "resnet_busy": TrainWork("resnet_fmnist", images="n_train_peers", busy=True),
}
PROFILE_NETWORKS = (*fm.ARCHITECTURES, *fm.PEERS)


# ---------------------------------------------------------------- command line


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter, allow_abbrev=False
    )
    p.add_argument(
        "--repeats", type=positive_int, help="timed runs per item (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="threads for torch, NumPy's BLAS and fran alike (default: os.cpu_count())",
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results.json", help="JSON results file")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 repeat, 1,000 images (500 for the peers, 2,000 for the 60k item), "
        "a 512 x 512 peak product",
    )
    p.add_argument(
        "--profile",
        choices=(*PROFILE_NETWORKS, "all"),
        help="only profile one fran epoch of this network (or all six, as Markdown) with "
        "cProfile, its time in products, copies, element-wise passes and Python overhead",
    )
    p.add_argument(
        "--profile-md", type=Path, help="with --profile: also write the Markdown to this file"
    )
    p.add_argument(
        "--blas-settings",
        choices=("as-is", "both"),
        default="as-is",
        help="as-is (default): this process's environment; both: run the whole bench twice in "
        "child processes, with the environment as given and with OPENBLAS_CORETYPE and "
        "OPENBLAS_L2_SIZE both unset (bench_both.py), and print a combined summary",
    )
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(ITEMS),
        help=f"comma-separated items to run (default all: {','.join(ITEMS)})",
    )
    p.add_argument(
        "--n-train", type=positive_int, help="training images (default 10,000; 1,000 with --quick)"
    )
    p.add_argument(
        "--n-train-peers",
        type=positive_int,
        help="training images of the three peer items (default 5,000; 500 with --quick)",
    )
    p.add_argument(
        "--n-large",
        type=positive_int,
        help="images of lenet5_60k_b256 (default 60,000; 2,000 with --quick)",
    )
    p.add_argument(
        "--n-test", type=positive_int, help="inference images (default 10,000; 1,000 with --quick)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="training batch of the seed's networks (default 64; the peers use their examples')",
    )
    p.add_argument(
        "--infer-batch", type=positive_int, default=500, help="inference batch (default 500)"
    )
    p.add_argument(
        "--peak-size",
        type=positive_int,
        help="n of the n x n float32 peak product (default 2048; 512 with --quick)",
    )
    p.add_argument("--seed", type=int, default=0, help="data and init seed (default 0)")
    p.add_argument("--rss-child", choices=("fran", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.only) - set(ITEMS)
    if unknown:
        p.error(f"--only: unknown items {sorted(unknown)}; known: {', '.join(ITEMS)}")
    if __name__ == "__main__" and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        p.error(f"--threads {args.threads} disagrees with the early read of the command line")
    small = 1_000 if args.quick else 10_000
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.n_train = args.n_train or small
    args.n_test = args.n_test or small
    args.n_train_peers = args.n_train_peers or (500 if args.quick else 5_000)
    args.n_large = args.n_large or (2_000 if args.quick else 60_000)
    args.peak_size = args.peak_size or (512 if args.quick else 2048)
    resnet = args.profile in ("resnet_fmnist", "all") if args.profile else None
    resnet = "resnet_fmnist_train" in args.only if resnet is None else resnet
    if args.n_train_peers < 256 and resnet:
        p.error(
            "--n-train-peers must be >= 256: resnet_fmnist's warm-up + cosine schedule "
            "needs 2 steps of 128 per epoch"
        )
    return args


# ---------------------------------------------------------------- threads and torch


def setup_torch(threads: int):
    """Import torch (only now: the fran child never does) and give it `threads` threads."""
    import torch
    from helpers import torch_models

    torch.set_num_threads(threads)
    return torch, torch_models


# ---------------------------------------------------------------- data and timing


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uniform float32 images (n, 1, 28, 28) in [0, 1] and n int64 labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    return X, y


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by fn(), after a garbage collection."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def progress(run: int, repeats: int, fran_times: list[float], torch_times: list[float]) -> None:
    print(
        f"  run {run + 1}/{repeats}: fran {fran_times[-1]:.3f} s, torch {torch_times[-1]:.3f} s",
        flush=True,
    )


# A 1-minute load average above LOAD_MARGIN per CPU beyond this benchmark's own threads means
# other work competes for the CPUs: the timings are then not to be trusted.
LOAD_MARGIN = 0.5


def high_load(load: float, cpus: int, own_threads: float) -> bool:
    """Whether `load` exceeds what this run itself explains (own_threads) by LOAD_MARGIN * cpus."""
    return load - own_threads > LOAD_MARGIN * cpus


def check_load(results: dict, when: str, own_threads: float) -> None:
    """Warn (stderr, and results["warnings"]) when the machine's load is high at `when`."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this system
        return
    cpus = os.cpu_count() or 1
    if high_load(load, cpus, own_threads):
        message = (
            f"warning: load average {load:.2f} on {cpus} CPUs {when} (this run accounts for "
            f"about {own_threads:g}): other work is competing, the timings will be slow and noisy"
        )
        print(message, file=sys.stderr, flush=True)
        results.setdefault("warnings", []).append(message)


def batch_of(work: TrainWork, args) -> int:
    if work.batch is not None:
        return work.batch
    return fm.peer_batch_size(work.network) if work.peer else args.batch_size


def fran_epoch(work: TrainWork, X, target, batch: int, seed: int) -> Callable[[], object]:
    """A fresh fran model after its warm-up batch, as a call that trains it one epoch."""
    if work.peer:
        optimizer = fm.peer_optimizer(work.network, -(-len(X) // batch))
        model = fm.warmup_peer(fm.make_peer_model(work.network, seed), X, target, optimizer, batch)
        return lambda: fm.train_peer_epoch(model, X, target, optimizer, batch)
    model = fm.warmup(fm.make_model(work.network, seed=seed), X, target, batch)
    return lambda: fm.train_epoch(model, X, target, batch)


def torch_epoch(work: TrainWork, xt, tt, batch: int, seed: int, tm) -> Callable[[], object]:
    """The same for the torch twin."""
    if work.peer:
        trainer = tm.make_peer_trainer(work.network, seed, -(-len(xt) // batch))
        trainer = tm.warmup_peer(trainer, xt, tt, batch)
        return lambda: tm.train_peer_epoch(trainer, xt, tt, batch)
    trainer = tm.warmup(tm.make_trainer(work.network, seed=seed), xt, tt, batch)
    return lambda: tm.train_epoch(trainer, xt, tt, batch)


SPIN = "while True: pass"
SPIN_SETTLE_S = 0.3  # the spinner is running (and has its core) before the clock starts


@contextlib.contextmanager
def busy_core(busy: bool = True):
    """A child Python spinning on one core for the duration (killed after), or nothing."""
    if not busy:
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(SPIN_SETTLE_S)
        if spinner.poll() is not None:
            raise RuntimeError(f"the busy-core child exited with {spinner.returncode}")
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def bench_train(work: TrainWork, X, target, args, tm) -> tuple[list[float], list[float]]:
    """One epoch per run for each framework, alternating, each after a warm-up batch (untimed,
    before the busy-core child starts: both frameworks get the same conditions)."""
    xt, tt = tm.as_tensors(X, target)
    batch = batch_of(work, args)
    fran_times, torch_times = [], []
    for run in range(args.repeats):
        epoch = fran_epoch(work, X, target, batch, args.seed + run)
        with busy_core(work.busy):
            fran_times.append(timed(epoch))
        epoch = torch_epoch(work, xt, tt, batch, args.seed + run, tm)
        with busy_core(work.busy):
            torch_times.append(timed(epoch))
        progress(run, args.repeats, fran_times, torch_times)
    return fran_times, torch_times


def bench_infer(arch: str, X, args, tm) -> tuple[list[float], list[float]]:
    """Inference over X in batches of args.infer_batch, alternating, each after a warm-up batch."""
    (xt,) = tm.as_tensors(X)
    b = args.infer_batch
    fran_times, torch_times = [], []
    for run in range(args.repeats):
        model = fm.make_model(arch, seed=args.seed + run)
        fm.infer(model, X[:b], b)
        fran_times.append(timed(lambda m=model: fm.infer(m, X, b)))
        trainer = tm.make_trainer(arch, seed=args.seed + run)
        tm.infer(trainer, xt[:b], b)
        torch_times.append(timed(lambda t=trainer: tm.infer(t, xt, b)))
        progress(run, args.repeats, fran_times, torch_times)
    out_fran, out_torch = fm.infer(model, X[:b], b), tm.infer(trainer, xt[:b], b)
    assert out_fran.shape == tuple(out_torch.shape), (out_fran.shape, out_torch.shape)
    return fran_times, torch_times


def child_env() -> dict[str, str]:
    """The environment for child Pythons: same thread variables, same fran on the path."""
    env = dict(os.environ)
    if EXTRA_PATH:
        env["PYTHONPATH"] = os.pathsep.join([*EXTRA_PATH, env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return env


def run_seconds(code: str, env: dict[str, str]) -> float:
    """Wall time of `python -c code` in a fresh process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=BENCH_DIR, check=True)
    return time.perf_counter() - start


def bench_import(args) -> tuple[list[float], list[float], list[float]]:
    """`import fran` and `import torch` minus `pass`, in fresh processes, alternating.

    Bytecode caching is allowed (PYTHONDONTWRITEBYTECODE dropped) so that, as for an installed
    package, the untimed first round compiles a changed checkout and the timed rounds do not.
    """
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for code in ("pass", "import fran", "import torch"):  # untimed: bytecode and file caches
        run_seconds(code, env)
    rounds = max(args.repeats, 3 if args.quick else 5)
    base, fran_t, torch_t = [], [], []
    for _ in range(rounds):
        base.append(run_seconds("pass", env))
        fran_t.append(run_seconds("import fran", env))
        torch_t.append(run_seconds("import torch", env))
    b = statistics.median(base)
    return [t - b for t in fran_t], [t - b for t in torch_t], base


def peak_rss_kib() -> int:
    """This process's peak resident set: VmHWM, which, unlike ru_maxrss, a child does not inherit.

    (On Linux a child's ru_maxrss starts at its parent's peak when it execs, so a small child of
    this big parent would report the parent's memory.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


def rss_child(args) -> None:
    """In a fresh process: one LeNet5 epoch (after a warm-up batch); print peak RSS as JSON."""
    X, y = make_data(args.n_train, args.seed)
    with blas_thread_limit(args.threads):
        start = time.perf_counter()
        if args.rss_child == "fran":
            fm.train_epoch(
                fm.warmup(fm.make_model("lenet5"), X, y, args.batch_size), X, y, args.batch_size
            )
        else:
            _, tm = setup_torch(args.threads)
            xt, yt = tm.as_tensors(X, y)
            tm.train_epoch(
                tm.warmup(tm.make_trainer("lenet5"), xt, yt, args.batch_size),
                xt,
                yt,
                args.batch_size,
            )
        seconds = time.perf_counter() - start
    report = {
        "peak_rss_kib": peak_rss_kib(),
        "seconds": seconds,
        "torch_imported": "torch" in sys.modules,
        "malloc_tuned": fran.memory.applied,
    }
    print(json.dumps(report))


def bench_peak_rss(args) -> tuple[list[float], list[float], list[dict]]:
    """Peak RSS (MiB) of a LeNet5 epoch, one fresh child process per run and framework."""
    env = child_env()
    # the torch child imports fran (through this script), which would tune glibc's malloc for
    # it (fran/memory.py); FRAN_MALLOC_TUNING=0 leaves its malloc as PyTorch users have it
    envs = {"fran": env, "torch": {**env, "FRAN_MALLOC_TUNING": "0"}}
    fran_mib, torch_mib, reports = [], [], []
    for _ in range(args.repeats):
        for framework, sink in (("fran", fran_mib), ("torch", torch_mib)):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--rss-child",
                framework,
                "--threads",
                str(args.threads),
                "--n-train",
                str(args.n_train),
                "--batch-size",
                str(args.batch_size),
                "--seed",
                str(args.seed),
            ]
            out = subprocess.run(
                cmd, env=envs[framework], cwd=BENCH_DIR, check=True, capture_output=True, text=True
            )
            report = json.loads(out.stdout.strip().splitlines()[-1])
            if framework == "fran" and report["torch_imported"]:
                raise RuntimeError("the fran peak-RSS child imported torch")
            if framework == "torch" and report["malloc_tuned"]:
                raise RuntimeError("the torch peak-RSS child ran with fran's malloc tuning")
            reports.append({"framework": framework, **report})
            sink.append(report["peak_rss_kib"] / 1024)
    return fran_mib, torch_mib, reports


# ---------------------------------------------------------------- results


def spread(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def summarise(
    key: str,
    fran_vals,
    torch_vals,
    unit: str,
    images: int | None = None,
    work: str = "",
    flop: float | None = None,
) -> dict:
    """An item's record: both frameworks' spreads, the ratio of medians and the target; for a
    throughput item images/s, and with its floating-point work (flop) the GFLOP/s reached."""
    label, target = ITEMS[key]
    record = {
        "item": key,
        "label": label,
        "work": work,
        "unit": unit,
        "fran": spread(fran_vals),
        "torch": spread(torch_vals),
    }
    if images is not None:
        record["images"] = images
        for framework in ("fran", "torch"):
            record[framework]["images_per_s"] = images / record[framework]["median"]
    if flop is not None:
        record["gflop"] = flop / 1e9
        for framework in ("fran", "torch"):
            record[framework]["gflop_per_s"] = record["gflop"] / record[framework]["median"]
    record["ratio"] = record["fran"]["median"] / record["torch"]["median"]
    record["target"] = target
    record["met"] = record["ratio"] <= target
    return record


def fmt(value: float, unit: str) -> str:
    if unit == "s" and value < 1.0:
        return f"{value * 1000:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.0f} {unit}"


def cell(record: dict, framework: str) -> str:
    """'median (min–max)', with images/s for the throughput items."""
    s, unit = record[framework], record["unit"]
    text = fmt(s["median"], unit)
    if len(s["runs"]) > 1:
        text += f" ({fmt(s['min'], unit)} – {fmt(s['max'], unit)})"
    if "images_per_s" in s:
        text += f", {s['images_per_s']:,.0f} img/s"
    return text


def gflops_cell(record: dict, framework: str, peak_all: float | None) -> str:
    """'12.3 (4.5%)': GFLOP/s at the median and its share of the all-threads peak; '' if none."""
    rate = record[framework].get("gflop_per_s")
    if rate is None:
        return ""
    share = f" ({100 * rate / peak_all:.1f}%)" if peak_all else ""
    return f"{rate:.1f}{share}"


def label_of(record: dict) -> str:
    return record["label"] + (f" ({record['images']:,} images)" if "images" in record else "")


def print_item(record: dict) -> None:
    verdict = "met" if record["met"] else "NOT met"
    rates = ""
    if "gflop" in record:
        rates = (
            f"\n    {record['gflop']:.2f} GFLOP: fran {record['fran']['gflop_per_s']:.1f} GFLOP/s,"
            f" PyTorch {record['torch']['gflop_per_s']:.1f} GFLOP/s"
        )
    print(
        f"{label_of(record)}: {record['work']}\n    fran    {cell(record, 'fran')}"
        f"\n    PyTorch {cell(record, 'torch')}{rates}"
        f"\n    fran/PyTorch {record['ratio']:.3f}  (target <= {record['target']}: {verdict})",
        flush=True,
    )


def peak_line(results: dict) -> str:
    pk = results.get("peak")
    if not pk:
        return "machine peak not measured"
    return (
        f"NumPy float32 {pk['n']} x {pk['n']} product (best of {pk['repeats']}): "
        f"{pk['one_thread']:.1f} GFLOP/s on 1 thread, {pk['all_threads']:.1f} GFLOP/s on "
        f"{pk['threads']}"
    )


def markdown_table(results: dict) -> str:
    m, c = results["machine"], results["config"]
    blas = m["numpy_blas"]
    load_end = m.get("load_average_at_end")
    load = "load average " + " ".join(f"{v:.2f}" for v in m["load_average_at_start"])
    if load_end:
        load += " at the start, " + " ".join(f"{v:.2f}" for v in load_end) + " at the end"
    peak_all = (results.get("peak") or {}).get("all_threads")
    lines = [
        f"{m['cpu']}, {m['threads']} threads for both; BLAS kernel {blas_label(m)}; "
        f"Python {m['python']}, fran {m['fran']} ({m['fran_git']}), "
        f"NumPy {m['numpy']} ({blas.get('name')} {blas.get('version') or ''}), "
        f"PyTorch {m['torch']}; float32, synthetic data; median (min – max) of "
        f"{c['repeats']} runs; {m['date']}; {load}.",
        "",
        f"{peak_line(results)}. GFLOP/s count the products of the convolutions and dense layers "
        "(flops.py), the % is of the all-threads peak.",
        "",
        "| benchmark | work | fran | PyTorch | fran / PyTorch | target | met "
        "| fran GFLOP/s (% peak) | PyTorch GFLOP/s (% peak) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["items"]:
        lines.append(
            f"| {label_of(r)} | {r.get('work', '')} | {cell(r, 'fran')} | {cell(r, 'torch')} "
            f"| {r['ratio']:.3f} | ≤ {r['target']} | {'yes' if r['met'] else '**no**'} "
            f"| {gflops_cell(r, 'fran', peak_all)} | {gflops_cell(r, 'torch', peak_all)} |"
        )
    for w in results.get("warnings", []):
        lines += ["", f"> {w}"]
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    """Write atomically (fran.io.write_json: a temporary file beside `path`, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fran.io.write_json(path, results)


# ---------------------------------------------------------------- main


def profile_network(name: str, args) -> str:
    """cProfile one fran epoch of `name` on one thread; its time by class, as Markdown."""
    work = next(w for w in TRAIN_ITEMS.values() if w.network == name and not w.busy)
    n = getattr(args, work.images if work.peer else "n_train")
    X, y = make_data(n, args.seed)
    target = X if name == "autoencoder" else y
    batch = fm.peer_batch_size(name) if work.peer else args.batch_size
    saved = os.environ.get("FRAN_NUM_THREADS")
    os.environ["FRAN_NUM_THREADS"] = "1"  # cProfile sees only the calling thread
    try:
        with blas_thread_limit(1):
            epoch = fran_epoch(work, X, target, batch, args.seed)
            start = time.perf_counter()
            stats = profile_kinds.profile(epoch)
            wall = time.perf_counter() - start
    finally:
        if saved is None:
            os.environ.pop("FRAN_NUM_THREADS")
        else:
            os.environ["FRAN_NUM_THREADS"] = saved
    title = f"{name}: one fran epoch of {n:,} images, batch {batch}, one thread"
    return profile_kinds.markdown(title, stats, wall)


def profile_all(args) -> str:
    names = PROFILE_NETWORKS if args.profile == "all" else (args.profile,)
    m = openblas_runtime() or {}
    head = (
        f"cProfile of one fran training epoch per network (`bench.py --profile "
        f"{args.profile}`), FRAN_NUM_THREADS=1 and BLAS held to one thread; "
        f"{cpu_model()}, OpenBLAS core {m.get('corename', '?')}, "
        f"{', '.join(f'{k}={os.environ.get(k)}' for k in BLAS_VARS)}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Own time by class "
        "(the rules are in benchmarks/README.md)."
    )
    sections = [head]
    for name in names:
        sections.append(profile_network(name, args))
        print(sections[-1] + "\n", file=sys.stderr, flush=True)  # progress
    text = "\n\n".join(sections) + "\n"
    if args.profile_md:
        args.profile_md.write_text(text)
    return text


def network_flop(work: TrainWork, training: bool = True) -> float:
    """Floating-point operations per image of a network (flops.py's convention)."""
    spec = fm.peer_example(work.network).build() if work.peer else fm.ARCHITECTURES[work.network]()
    count = flops.train_flops if training else flops.forward_flops
    return float(count(spec, (1, 28, 28)))


def optimizer_label(work: TrainWork) -> str:
    if work.peer:
        return fm.peer_example(work.network).EXAMPLE.optimizer_label.rstrip(",")
    return "Adam(1e-3)"


def run_item(key: str, args, data: Callable[[int], tuple], tm) -> dict:
    if key in TRAIN_ITEMS:
        work = TRAIN_ITEMS[key]
        n = getattr(args, work.images)
        X, y = data(n)
        target = X if work.network == "autoencoder" else y
        f, t = bench_train(work, X, target, args, tm)
        flop = network_flop(work) * n
        text = (
            f"{work.network}, 1 epoch, batch {batch_of(work, args)}, {optimizer_label(work)}"
            + (", a child spinning on one core" if work.busy else "")
            + f"; {flop / 1e9:.1f} GFLOP"
        )
        return summarise(key, f, t, "s", images=n, work=text, flop=flop)
    if key == "lenet5_infer":
        X = data(args.n_test, args.seed + 1)[0]
        f, t = bench_infer("lenet5", X, args, tm)
        flop = network_flop(TrainWork("lenet5"), training=False) * args.n_test
        text = f"batches of {args.infer_batch}, predict / inference_mode; {flop / 1e9:.1f} GFLOP"
        return summarise(key, f, t, "s", images=args.n_test, work=text, flop=flop)
    if key == "import":
        f, t, base = bench_import(args)
        text = "`python -c 'import X'` minus `python -c pass`"
        return {**summarise(key, f, t, "s", work=text), "python_startup_s": spread(base)}
    f, t, reports = bench_peak_rss(args)
    text = f"a fresh process per run, {args.n_train:,} images, VmHWM"
    return {**summarise(key, f, t, "MiB", work=text), "children": reports}


def own_threads(key: str, args) -> float:
    """The load this run itself puts on the machine during an item."""
    work = TRAIN_ITEMS.get(key)
    return args.threads + (1 if work is not None and work.busy else 0)


def run(args, torch, tm) -> dict:
    selected = [key for key in ITEMS if key in args.only]
    peers_run = [TRAIN_ITEMS[k].network for k in selected if k in TRAIN_ITEMS]
    peers_run = [n for n in fm.PEERS if n in peers_run]
    results = {
        "machine": machine_info(args.threads, torch, THREAD_VARS),
        "config": {
            "repeats": args.repeats,
            "threads": args.threads,
            "n_train": args.n_train,
            "n_train_peers": args.n_train_peers,
            "n_large": args.n_large,
            "n_test": args.n_test,
            "batch_size": args.batch_size,
            "infer_batch": args.infer_batch,
            "seed": args.seed,
            "quick": args.quick,
            "items": selected,
            "optimizer": "adam(1e-3) for the seed's networks; the examples' own for the peers",
            "dtype": "float32",
            "kernels": fran.kernels.backend(),  # FRAN_KERNELS=numpy: the NumPy references
            "malloc_tuned": fran.memory.applied,
        },
        "param_counts": tm.check_param_counts((*fm.ARCHITECTURES, *peers_run)),
        "layer_shapes": tm.check_twin_shapes((*fm.ARCHITECTURES, *peers_run)),
        "items": [],
        "complete": False,
    }
    m = results["machine"]
    print(
        f"fran {m['fran']} ({m['fran_git']}) vs PyTorch {m['torch']} on {m['cpu']}\n"
        f"threads: {args.threads} (torch {m['torch_threads']}, OpenBLAS "
        f"{(m['openblas_runtime'] or {}).get('num_threads', '?')}; env {m['thread_env']}); "
        f"fran runs {args.threads} threads of its own (FRAN_NUM_THREADS) and holds BLAS to one "
        f"thread inside them; kernels: {fran.kernels.backend()} (FRAN_KERNELS)\n"
        f"NumPy {m['numpy']} BLAS: {m['numpy_blas']}\nBLAS kernel: {blas_label(m)}\n"
        f"{args.repeats} runs per item, {args.n_train:,} train / {args.n_test:,} test images, "
        f"{args.n_train_peers:,} for the peers, {args.n_large:,} for lenet5_60k_b256; "
        f"params per network: {results['param_counts']}; load {m['load_average_at_start']}\n",
        flush=True,
    )
    check_load(results, "before the run", 0)
    results["peak"] = peak.machine_peak(args.peak_size, 3, args.threads)
    print(peak_line(results), flush=True)
    if results["peak"]["all_threads"] < results["peak"]["one_thread"]:
        message = (
            "warning: NumPy's product ran slower on all threads than on one: another process "
            "holds a core (a multithreaded OpenBLAS then waits for it); the % of peak is inflated"
        )
        print(message, file=sys.stderr, flush=True)
        results.setdefault("warnings", []).append(message)
    cache: dict = {}

    def data(n: int, seed: int = args.seed):
        if (n, seed) not in cache:
            cache[(n, seed)] = make_data(n, seed)
        return cache[(n, seed)]

    start = time.perf_counter()
    for key in selected:
        record = run_item(key, args, data, tm)
        results["items"].append(record)
        print_item(record)
        check_load(results, f"after {key}", own_threads(key, args))
        write_json(results, args.out)
    results["complete"] = True
    results["seconds_total"] = time.perf_counter() - start
    results["machine"]["load_average_at_end"] = os.getloadavg()
    write_json(results, args.out)
    print(f"\nwrote {args.out}\n\n{markdown_table(results)}")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    fran.memory.keep_freed_memory()  # as fran's examples do (a no-op under FRAN_MALLOC_TUNING=0)
    if args.rss_child:
        rss_child(args)
    elif args.blas_settings == "both":
        import bench_both

        return bench_both.main(bench_both.strip_option(argv, "--blas-settings"))
    elif args.profile:
        print(profile_all(args))
    else:
        torch, tm = setup_torch(args.threads)
        with blas_thread_limit(args.threads):
            run(args, torch, tm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
