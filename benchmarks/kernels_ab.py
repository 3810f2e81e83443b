"""fran.kernels' compiled twins against their NumPy references: interleaved A/B in one process.

Each kernel runs at the shapes of the seed's and the peer networks' layers (float32, batch 64 or
128): numpy, numba, numpy, numba, ... `--repeats` times (after a warm-up call that compiles),
and prints the median time of each and the ratio numpy / numba with its spread. Alternating in
one process gives both sides the same machine load; on a loaded machine the ratios are only
indicative. One thread (FRAN kernels never thread inside; BLAS is not involved).

    PYTHONPATH=. python benchmarks/kernels_ab.py [--repeats 21] [--only pool]
    PYTHONPATH=. python benchmarks/kernels_ab.py --epochs 2048 --repeats 5   # whole epochs
    PYTHONPATH=. python benchmarks/kernels_ab.py --compile   # cold vs warm cache (fresh processes)
    PYTHONPATH=. python benchmarks/kernels_ab.py --malloc 3  # fran.memory opt-in vs the default
    PYTHONPATH=. python benchmarks/kernels_ab.py --digests 512  # params' bits, both backends
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import fran  # noqa: E402
from fran import kernels  # noqa: E402
from fran.kernels import batchnorm, epilogue, pool  # noqa: E402

RNG = np.random.default_rng(0)


def conv_out(O, N, H, W):
    """A conv2d result as the layers hold it: (O, N*H*W) memory seen as NCHW."""
    z = RNG.standard_normal((O, N, H, W), dtype=np.float32)
    return z, z.transpose(1, 0, 2, 3)


# name, (O, N, H, W) of a conv output that the kernel sees
SHAPES = {
    "lenet5 conv1 6x28x28 b64": (6, 64, 28, 28),
    "fmnist conv 32x28x28 b64": (32, 64, 28, 28),
    "keras conv2 64x24x24 b128": (64, 128, 24, 24),
    "resnet 16x28x28 b128": (16, 128, 28, 28),
}


def cases():
    for label, (O, N, H, W) in SHAPES.items():
        z2d, x = conv_out(O, N, H, W)
        zf = z2d.reshape(O, -1)
        b = RNG.standard_normal(O, dtype=np.float32)
        y, arg = pool.max_pool(x, 2, 2, winners=True)
        dy = RNG.standard_normal(y.shape, dtype=np.float32)
        dyz = RNG.standard_normal(zf.shape, dtype=np.float32)
        yield "pool", f"max_pool + argmax, {label}", lambda x=x: pool.max_pool(x, 2, 2, True)
        yield "pool", f"max_pool_grad, {label}", lambda x=x, dy=dy: _pool_grad(x, dy)
        yield (
            "epilogue",
            f"bias + relu, {label}",
            lambda zf=zf.copy(), b=b: epilogue.bias_act(zf, b, "relu"),  # NumPy's adds in place
        )
        yield "epilogue", f"relu grad, {label}", lambda zf=zf, d=dyz: epilogue.relu_grad(zf, d)
        mu, a = np.zeros(O, np.float32), RNG.random(O, dtype=np.float32)
        beta = RNG.random(O, dtype=np.float32)
        dyb = conv_out(O, N, H, W)[1].reshape(N, O, -1)  # as conv2d's dx hands it back
        c = x.reshape(N, O, -1) - mu[:, None]  # channels-first, as a conv output's
        yield (
            "batchnorm",
            f"bn scale_shift, {label}",
            lambda c=c, a=a, beta=beta: batchnorm.scale_shift(c, a, beta),
        )
        yield (
            "batchnorm",
            f"bn input grad, {label}",
            lambda d=dyb, c=c, a=a: batchnorm.input_grad(d, c, a, a * 0.1, a * 0.01),
        )


def _pool_grad(x, dy):
    # the winners of the backend that runs: the forward is outside the timing
    return pool.max_pool_grad(dy, _ARG[kernels.backend(), id(x)])


_ARG: dict = {}


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ab(fn, repeats: int) -> dict:
    times = {"numpy": [], "numba": []}
    for backend in times:  # warm-up: compiles the twin
        with kernels.using(backend):
            fn()
    for _ in range(repeats):
        for backend in times:
            with kernels.using(backend):
                times[backend].append(time_once(fn))
    ratios = [a / b for a, b in zip(times["numpy"], times["numba"], strict=True)]
    q = statistics.quantiles(ratios, n=4)
    return {
        "numpy_ms": 1e3 * statistics.median(times["numpy"]),
        "numba_ms": 1e3 * statistics.median(times["numba"]),
        "ratio": statistics.median(ratios),
        "ratio_iqr": (q[0], q[2]),
    }


COMPILE_CHILD = """
import sys, time, numpy as np
t0 = time.perf_counter()
import fran
t1 = time.perf_counter()
sys.path.insert(0, {tests!r})
from helpers import fran_models as fm
rng = np.random.default_rng(0)
X = rng.random((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
model = fm.make_model("{arch}")
t2 = time.perf_counter()
fm.train_epoch(model, X, y, 64)
t3 = time.perf_counter()
fm.train_epoch(model, X, y, 64)
t4 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t3 - t2:.3f}} {{t4 - t3:.3f}}")
"""


def compile_costs(arch: str, runs: int) -> list[dict]:
    """First training step of `arch` in fresh processes: a cold Numba cache, then warm ones."""
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        for i in range(runs):
            for backend in ("numba", "numpy"):
                env["FRAN_KERNELS"] = backend
                code = COMPILE_CHILD.format(arch=arch, tests=str(REPO / "tests"))
                run = subprocess.run(
                    [sys.executable, "-c", code],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                imp, first, second = map(float, run.stdout.split())
                cold = backend == "numba" and i == 0
                cache_state = "cold" if cold else ("warm" if backend == "numba" else "-")
                out.append(
                    {
                        "backend": backend,
                        "cache": cache_state,
                        "import_s": imp,
                        "first_step_s": first,
                        "second_step_s": second,
                    }
                )
    return out


MALLOC_CHILD = """
import json, sys, time, numpy as np
import fran
if {tuned}:
    fran.memory.keep_freed_memory()
sys.path.insert(0, {tests!r})
from helpers import fran_models as fm
rng = np.random.default_rng(0)
X = rng.random((1024, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 1024)
out = {{}}
for name in ("lenet5", "fmnist_cnn", "autoencoder"):
    model = fm.warmup(fm.make_model(name), X, X if name == "autoencoder" else y, 64)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        model = fm.train_epoch(model, X, X if name == "autoencoder" else y, 64)
        times.append(time.perf_counter() - t)
    out[name] = min(times)
print(json.dumps(out))
"""


def malloc_ab(pairs: int) -> dict:
    """Epoch times with and without fran.memory.keep_freed_memory(), fresh processes alternating
    (the settings cannot be undone inside one process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times: dict = {}
    for _ in range(pairs):
        for tuned in (True, False):
            code = MALLOC_CHILD.format(tuned=tuned, tests=str(REPO / "tests"))
            run = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            for name, t in json.loads(run.stdout.splitlines()[-1]).items():
                times.setdefault(name, {True: [], False: []})[tuned].append(t)
    return {
        name: {
            "tuned_ms": 1e3 * statistics.median(t[True]),
            "default_ms": 1e3 * statistics.median(t[False]),
            "default_over_tuned": statistics.median(
                [b / a for a, b in zip(t[True], t[False], strict=True)]
            ),
        }
        for name, t in times.items()
    }


def epochs_ab(n: int, repeats: int, only: str = "") -> list[dict]:
    """Whole training epochs of each network on n random images, the backends alternating."""
    sys.path.insert(0, str(REPO / "tests"))  # the twin networks live with the tests
    from helpers import fran_models as fm

    X = RNG.random((n, 1, 28, 28), dtype=np.float32)
    y = RNG.integers(0, 10, n)
    rows = []
    for name in (*fm.ARCHITECTURES, *fm.PEERS):
        if only and only not in name:
            continue
        if name in fm.PEERS:
            batch, model = fm.peer_batch_size(name), fm.make_peer_model(name)
            opt = fm.peer_optimizer(name, n // batch)

            def epoch(model=model, batch=batch, opt=opt):
                return fm.train_peer_epoch(model, X, y, opt, batch)
        else:
            model = fm.make_model(name)
            target = X if name == "autoencoder" else y

            def epoch(model=model, target=target):
                return fm.train_epoch(model, X, target, 64)

        r = {"network": f"{name} epoch, {n} images", **ab(epoch, repeats)}
        rows.append(r)
        print_row(r["network"], r)
    return rows


def digests(n: int) -> dict:
    """Every benchmarked network trained 2 epochs on n random images on each backend: the sha256
    of its params (the same on both when the twins keep the references' bits)."""
    import hashlib

    sys.path.insert(0, str(REPO / "tests"))  # the twin networks live with the tests
    from helpers import fran_models as fm

    from fran.tree import tree_leaves

    X = RNG.random((n, 1, 28, 28), dtype=np.float32)
    y = RNG.integers(0, 10, n)
    out = {}
    for name in (*fm.ARCHITECTURES, *fm.PEERS):
        out[name] = {}
        for backend in kernels.BACKENDS:
            with kernels.using(backend):
                if name in fm.PEERS:
                    batch, model = fm.peer_batch_size(name), fm.make_peer_model(name)
                    opt = fm.peer_optimizer(name, n // batch, 2)
                    for _ in range(2):
                        model = fm.train_peer_epoch(model, X, y, opt, batch)
                else:
                    model, target = fm.make_model(name), (X if name == "autoencoder" else y)
                    for _ in range(2):
                        model = fm.train_epoch(model, X, target, 64)
            leaves = b"".join(a.tobytes() for a in tree_leaves(model.params))
            out[name][backend] = hashlib.sha256(leaves).hexdigest()[:16]
        print(name, out[name], flush=True)
    return out


def print_row(label: str, r: dict) -> None:
    lo, hi = r["ratio_iqr"]
    print(
        f"{label:48s} numpy {r['numpy_ms']:8.3f} ms  numba {r['numba_ms']:8.3f} ms  "
        f"numpy/numba {r['ratio']:5.2f} (IQR {lo:.2f}-{hi:.2f})",
        flush=True,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--only", default="", help="run only kernels whose group or label has this")
    p.add_argument("--compile", action="store_true", help="cold vs warm cache, first train step")
    p.add_argument(
        "--arch", default="lenet5", help="network for --compile (tests/helpers/fran_models.py)"
    )
    p.add_argument("--epochs", type=int, metavar="N", help="whole epochs on N images instead")
    p.add_argument("--malloc", type=int, metavar="PAIRS", help="malloc opt-in vs default instead")
    p.add_argument("--digests", type=int, metavar="N", help="params hashes after 2 epochs instead")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    fran.memory.keep_freed_memory()  # as the examples and bench.py run (--malloc: both ways)
    if args.compile:
        rows = compile_costs(args.arch, 3)
        for r in rows:
            print(json.dumps(r))
        return 0
    if args.digests:
        same = all(len(set(d.values())) == 1 for d in digests(args.digests).values())
        print("the same bits on both backends" if same else "DIFFERENT bits")
        return 0 if same else 1
    if args.malloc:
        print(json.dumps(malloc_ab(args.malloc), indent=1))
        return 0
    if args.epochs:
        rows = epochs_ab(args.epochs, args.repeats, args.only)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
    rows = []
    for group, label, fn in cases():
        if args.only and args.only not in group and args.only not in label:
            continue
        if group == "pool" and "grad" in label:
            x = fn.__defaults__[0]
            for backend in ("numpy", "numba"):
                with kernels.using(backend):
                    _ARG[backend, id(x)] = pool.max_pool(x, 2, 2, True)[1]
        r = {"kernel": label, **ab(fn, args.repeats)}
        rows.append(r)
        print_row(label, r)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
