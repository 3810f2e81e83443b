"""fran versus PyTorch CPU, side by side, on the same work with the same thread count.

    python benchmarks/bench.py [--repeats N] [--threads N] [--out FILE.json] [--quick]
    python benchmarks/bench.py --profile      # cProfile of one fran LeNet5 epoch, top 25 by tottime

Items: LeNet5 training (one epoch) and inference, the Fashion-MNIST CNN and the conv autoencoder
(one epoch each), `import` time and the peak resident memory of a LeNet5 epoch. Timed runs
alternate (fran 1, torch 1, fran 2, ...), each epoch after one untimed warm-up batch; data is
synthetic (uniform images in [0, 1], random labels, fixed seed), float32, batch 64, Adam(1e-3).
Import time and peak memory are measured in fresh child processes; the fran child never imports
torch. The ratio is fran / PyTorch (lower is better). Results go to a JSON file, written
atomically after every item, and a Markdown table is printed at the end.
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
import cProfile
import ctypes
import datetime
import gc
import importlib.util
import json
import platform
import pstats
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXTRA_PATH = [] if importlib.util.find_spec("fran") else [str(REPO)]  # run from a checkout
sys.path[:0] = EXTRA_PATH

import fran_models as fm

import fran

ITEMS = {
    "lenet5_train": ("LeNet5 train, 1 epoch", 1.0),
    "lenet5_infer": ("LeNet5 inference", 1.0),
    "fmnist_train": ("FMNIST CNN train, 1 epoch", 1.0),
    "autoencoder_train": ("Conv autoencoder train, 1 epoch", 1.0),
    "import": ("import time", 0.1),
    "peak_rss": ("Peak RSS, LeNet5 1-epoch run", 0.5),
}
TRAIN_ITEMS = {
    "lenet5_train": "lenet5",
    "fmnist_train": "fmnist_cnn",
    "autoencoder_train": "autoencoder",
}


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
        "--repeats", type=positive_int, help="timed runs per item (default 5; 1 with --quick)"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="threads for torch, NumPy's BLAS and fran alike (default: os.cpu_count())",
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results.json", help="JSON results file")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 1,000 images")
    p.add_argument(
        "--profile",
        action="store_true",
        help="only profile one fran LeNet5 epoch with cProfile (top 25 by tottime)",
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
        "--n-test", type=positive_int, help="inference images (default 10,000; 1,000 with --quick)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="training batch (default 64)"
    )
    p.add_argument(
        "--infer-batch", type=positive_int, default=500, help="inference batch (default 500)"
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
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.n_train = args.n_train or small
    args.n_test = args.n_test or small
    return args


# ---------------------------------------------------------------- threads and machine


def blas_thread_limit(threads: int):
    """threadpoolctl's limit on NumPy's BLAS if installed; else the env variables already do it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def threadpool_info() -> list | None:
    try:
        from threadpoolctl import threadpool_info as info
    except ImportError:
        return None
    return info()


def openblas_runtime() -> dict | None:
    """The thread count and core of the OpenBLAS NumPy loaded (Linux; needs no threadpoolctl)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix in ("", "scipy_"):
            for suffix in ("", "64_"):
                threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
                if threads is None or core is None:
                    continue
                core.restype = ctypes.c_char_p
                return {"library": path, "num_threads": threads(), "corename": core().decode()}
    return None


def numpy_blas() -> dict:
    """NumPy's BLAS as its build config names it."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):  # numpy < 1.25 has no mode="dicts"
        return {"name": "unknown"}
    return {k: blas.get(k) for k in ("name", "version", "openblas configuration")}


def cpu_model() -> str:
    """The CPU's model name and its vector extensions that matter for BLAS and oneDNN kernels."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = dict(line.partition(":")[::2] for line in lines if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    features = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return f"{info.get('model name', platform.machine())} ({', '.join(features) or 'no AVX2'})"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def setup_torch(threads: int):
    """Import torch (only now: the fran child never does) and give it `threads` threads."""
    import torch
    import torch_models

    torch.set_num_threads(threads)
    return torch, torch_models


def machine_info(threads: int, torch) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fran": fran.__version__,
        "fran_git": git_commit(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "openblas_runtime": openblas_runtime(),
        "threadpoolctl": threadpool_info(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_parallel_info": torch.__config__.parallel_info().splitlines(),
        "threads": threads,
        "thread_env": {var: os.environ.get(var) for var in THREAD_VARS},
    }


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


def check_param_counts(tm) -> dict[str, int]:
    """Assert fran's and torch's networks have identical parameter counts; return them."""
    counts = {}
    for name in fm.ARCHITECTURES:
        n_fran = fm.n_params(fm.make_model(name))
        n_torch = tm.n_params(tm.make_trainer(name))
        if n_fran != n_torch:
            raise AssertionError(f"{name}: fran has {n_fran} params, torch {n_torch}")
        counts[name] = n_fran
    return counts


def torch_shapes(module, x) -> list[tuple]:
    """The per-sample shape after each module of an nn.Sequential, repeats (activations) dropped."""
    shapes = [tuple(x.shape[1:])]
    for m in module:
        x = m(x)
        if tuple(x.shape[1:]) != shapes[-1]:
            shapes.append(tuple(x.shape[1:]))
    return shapes


def fran_shapes(model) -> list[tuple]:
    """The per-sample shape after each fran layer, repeats (a final softmax) dropped."""
    shapes = [tuple(model.input_shape)]
    for spec in model.spec.layers:
        shape = tuple(fran.output_shape(spec, shapes[-1]))
        if shape != shapes[-1]:
            shapes.append(shape)
    return shapes


def check_twin_shapes(tm, torch) -> dict[str, list[tuple]]:
    """Assert each fran network and its torch twin produce the same shape after every layer,
    and the same output shape on a real batch (forward passes of 2 images); return the shapes."""
    out = {}
    for name in fm.ARCHITECTURES:
        model, trainer = fm.make_model(name), tm.make_trainer(name)
        x = np.zeros((2, *model.input_shape), dtype=np.float32)
        with torch.no_grad():
            theirs = torch_shapes(trainer.model.eval(), torch.from_numpy(x))
            y_torch = tuple(trainer.model(torch.from_numpy(x)).shape)
        ours = fran_shapes(model)
        if ours != theirs:
            raise AssertionError(f"{name}: fran's layer shapes {ours} != torch's {theirs}")
        y_fran = fm.infer(model, x, 2).shape
        if y_fran != y_torch:
            raise AssertionError(f"{name}: fran outputs {y_fran}, torch {y_torch}")
        out[name] = ours
    return out


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


def bench_train(arch: str, X, target, args, tm) -> tuple[list[float], list[float]]:
    """One epoch per run for each framework, alternating, each after a warm-up batch."""
    xt, tt = tm.as_tensors(X, target)
    fran_times, torch_times = [], []
    for run in range(args.repeats):
        model = fm.warmup(fm.make_model(arch, seed=args.seed + run), X, target, args.batch_size)
        fran_times.append(timed(lambda m=model: fm.train_epoch(m, X, target, args.batch_size)))
        trainer = tm.warmup(tm.make_trainer(arch, seed=args.seed + run), xt, tt, args.batch_size)
        torch_times.append(timed(lambda t=trainer: tm.train_epoch(t, xt, tt, args.batch_size)))
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


def summarise(key: str, fran_vals, torch_vals, unit: str, images: int | None = None) -> dict:
    """An item's record: both frameworks' spreads, the ratio of medians and the target."""
    label, target = ITEMS[key]
    record = {
        "item": key,
        "label": label,
        "unit": unit,
        "fran": spread(fran_vals),
        "torch": spread(torch_vals),
    }
    if images is not None:
        record["images"] = images
        for framework in ("fran", "torch"):
            record[framework]["images_per_s"] = images / record[framework]["median"]
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


def label_of(record: dict) -> str:
    return record["label"] + (f" ({record['images']:,} images)" if "images" in record else "")


def print_item(record: dict) -> None:
    verdict = "met" if record["met"] else "NOT met"
    print(
        f"{label_of(record)}\n    fran    {cell(record, 'fran')}"
        f"\n    PyTorch {cell(record, 'torch')}"
        f"\n    fran/PyTorch {record['ratio']:.3f}  (target <= {record['target']}: {verdict})",
        flush=True,
    )


def markdown_table(results: dict) -> str:
    m, c = results["machine"], results["config"]
    blas = m["numpy_blas"]
    lines = [
        f"{m['cpu']}, {m['threads']} threads for both; Python {m['python']}, fran {m['fran']}, "
        f"NumPy {m['numpy']} ({blas.get('name')} {blas.get('version') or ''}), "
        f"PyTorch {m['torch']}; float32, batch {c['batch_size']}, Adam(1e-3), inference batch "
        f"{c['infer_batch']}; median (min – max) of {c['repeats']} runs; {m['date'][:10]}.",
        "",
        "| benchmark | fran | PyTorch | fran / PyTorch | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["items"]:
        lines.append(
            f"| {label_of(r)} | {cell(r, 'fran')} | {cell(r, 'torch')} | {r['ratio']:.3f} "
            f"| ≤ {r['target']} | {'yes' if r['met'] else 'no'} |"
        )
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    """Write atomically (fran.io.write_json: a temporary file beside `path`, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fran.io.write_json(path, results)


# ---------------------------------------------------------------- main


def profile_fran(args) -> None:
    """Run one fran LeNet5 epoch under cProfile; print the top 25 functions by tottime."""
    X, y = make_data(args.n_train, args.seed)
    with blas_thread_limit(args.threads):
        model = fm.warmup(fm.make_model("lenet5", seed=args.seed), X, y, args.batch_size)
        profiler = cProfile.Profile()
        profiler.enable()
        fm.train_epoch(model, X, y, args.batch_size)
        profiler.disable()
    print(
        f"fran LeNet5, 1 epoch of {args.n_train:,} images, batch {args.batch_size}, "
        f"{args.threads} BLAS threads"
    )
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def run_item(key: str, args, data: dict, tm) -> dict:
    if key in TRAIN_ITEMS:
        X, y = data["train"]
        target = X if key == "autoencoder_train" else y
        f, t = bench_train(TRAIN_ITEMS[key], X, target, args, tm)
        return summarise(key, f, t, "s", images=args.n_train)
    if key == "lenet5_infer":
        f, t = bench_infer("lenet5", data["test"][0], args, tm)
        return summarise(key, f, t, "s", images=args.n_test)
    if key == "import":
        f, t, base = bench_import(args)
        return {**summarise(key, f, t, "s"), "python_startup_s": spread(base)}
    f, t, reports = bench_peak_rss(args)
    return {**summarise(key, f, t, "MiB"), "children": reports}


def run(args, torch, tm) -> dict:
    results = {
        "machine": machine_info(args.threads, torch),
        "config": {
            "repeats": args.repeats,
            "threads": args.threads,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "batch_size": args.batch_size,
            "infer_batch": args.infer_batch,
            "seed": args.seed,
            "quick": args.quick,
            "optimizer": "adam(1e-3)",
            "dtype": "float32",
        },
        "param_counts": check_param_counts(tm),
        "layer_shapes": check_twin_shapes(tm, torch),
        "items": [],
        "complete": False,
    }
    m = results["machine"]
    print(
        f"fran {m['fran']} ({m['fran_git']}) vs PyTorch {m['torch']} on {m['cpu']}\n"
        f"threads: {args.threads} (torch {m['torch_threads']}, OpenBLAS "
        f"{(m['openblas_runtime'] or {}).get('num_threads', '?')}; env {m['thread_env']}); "
        f"fran runs {args.threads} threads of its own (FRAN_NUM_THREADS) and holds BLAS to one "
        f"thread inside them\n"
        f"NumPy {m['numpy']} BLAS: {m['numpy_blas']}\n"
        f"{args.repeats} runs per item, {args.n_train:,} train / {args.n_test:,} test images; "
        f"params per network: {results['param_counts']}; load {m['load_average_at_start']}\n",
        flush=True,
    )
    data = {
        "train": make_data(args.n_train, args.seed),
        "test": make_data(args.n_test, args.seed + 1),
    }
    check_load(results, "before the run", 0)
    start = time.perf_counter()
    for key in ITEMS:
        if key in args.only:
            record = run_item(key, args, data, tm)
            results["items"].append(record)
            print_item(record)
            check_load(results, f"after {key}", args.threads)
            write_json(results, args.out)
    results["complete"] = True
    results["seconds_total"] = time.perf_counter() - start
    results["machine"]["load_average_at_end"] = os.getloadavg()
    write_json(results, args.out)
    print(f"\nwrote {args.out}\n\n{markdown_table(results)}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args)
    elif args.profile:
        profile_fran(args)
    else:
        torch, tm = setup_torch(args.threads)
        with blas_thread_limit(args.threads):
            run(args, torch, tm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
