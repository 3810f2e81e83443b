"""Every convolution shape of the six networks: fran's im2col path, fran's implicit GEMM and
torch.nn.functional.conv2d, forward and forward + backward, on one thread, alternating.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/conv_shapes.py [--repeats 31]
        [--pieces 2] [--dtype float32] [--only resnet_fmnist] [--out benchmarks/conv_shapes.json]

Each layer is timed at the batch one piece of the network's batch holds (--pieces 2: fran's
default cut, each piece's convolutions on one core; --pieces 1 for whole batches). Per repeat
the three paths run one after the other (in a rotating order), so a load change hits all three;
the table gives medians with (min-max) in ms and GFLOP/s of the median (forward 2*O*C*k*k*n,
backward the weight gradient and, where the layer has one, the input gradient, as many again).
"path" says which of fran's kernels the layer takes by default (fran.layers._conv's rules):
implicit, im2col, winograd or output side. conv2d_transpose layers are left out (they keep the
plain products). Needs numba (fran[kernels]) and torch (the oracle environment has both).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fran import kernels  # noqa: E402
from fran.layers import _conv  # noqa: E402

# (network, layer, network batch, C, H, O, k, stride, padding, has an input gradient)
LAYERS = [
    ("lenet5", "conv1 1->6 5x5", 64, 1, 28, 6, 5, 1, 0, False),
    ("lenet5", "conv2 6->16 3x3", 64, 6, 12, 16, 3, 1, 0, True),
    ("fmnist_cnn", "conv1 1->32 3x3", 64, 1, 28, 32, 3, 1, 0, False),
    ("fmnist_cnn", "conv2 32->64 3x3", 64, 32, 13, 64, 3, 1, 0, True),
    ("autoencoder", "enc1 1->16 3x3 p1", 64, 1, 28, 16, 3, 1, 1, False),
    ("autoencoder", "enc2 16->8 3x3 p1", 64, 16, 14, 8, 3, 1, 1, True),
    ("autoencoder", "dec 16->1 3x3 p1", 64, 16, 28, 1, 3, 1, 1, True),
    ("pytorch_mnist", "conv1 1->32 3x3", 64, 1, 28, 32, 3, 1, 0, False),
    ("pytorch_mnist", "conv2 32->64 3x3", 64, 32, 26, 64, 3, 1, 0, True),
    ("keras_mnist", "conv1 1->32 3x3", 128, 1, 28, 32, 3, 1, 0, False),
    ("keras_mnist", "conv2 32->64 3x3", 128, 32, 13, 64, 3, 1, 0, True),
    ("resnet_fmnist", "stem 1->16 3x3 p1", 128, 1, 28, 16, 3, 1, 1, False),
    ("resnet_fmnist", "block1 16->16 3x3 p1", 128, 16, 28, 16, 3, 1, 1, True),
    ("resnet_fmnist", "block2a 16->32 3x3 s2 p1", 128, 16, 28, 32, 3, 2, 1, True),
    ("resnet_fmnist", "block2b 32->32 3x3 p1", 128, 32, 14, 32, 3, 1, 1, True),
    ("resnet_fmnist", "shortcut 16->32 1x1 s2", 128, 16, 28, 32, 1, 2, 0, True),
]
PATHS = ("fran im2col", "fran implicit", "torch")


def fran_path(x, w, s, p) -> str:
    with kernels.using("numba"):
        tape = _conv.lay_out(x, w, s, p)
    if tape.x is not None:
        return "implicit"
    if tape.wino is not None:
        return "winograd"
    return "im2col" if tape.cols is not None else "output side"


def fran_calls(x, w, s, p, dz, input_grad, backend):
    def forward():
        with kernels.using(backend):
            return _conv.correlate(_conv.lay_out(x, w, s, p))

    def both():
        with kernels.using(backend):
            tape = _conv.lay_out(x, w, s, p)
            _conv.correlate(tape)
            return _conv.correlate_vjp(tape, dz, input_grad)

    return forward, both


def torch_calls(torch, x, w, s, p, dz, input_grad):
    F = torch.nn.functional
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    N, _, OH, OW = F.conv2d(xt[:1], wt, stride=s, padding=p).shape
    dy = torch.from_numpy(np.ascontiguousarray(dz.reshape(w.shape[0], -1, OH, OW).swapaxes(0, 1)))

    def forward():
        with torch.no_grad():
            return F.conv2d(xt, wt, stride=s, padding=p)

    def both():
        xg = xt.detach().requires_grad_(input_grad)
        wg = wt.detach().requires_grad_(True)
        F.conv2d(xg, wg, stride=s, padding=p).backward(dy)
        return wg.grad

    return forward, both


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(times: list) -> dict:
    ms = [1e3 * t for t in times]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def measure(layer, args, torch) -> dict:
    net, name, batch, C, H, O, k, s, p, input_grad = layer
    N = max(1, -(-batch // args.pieces))
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    x = rng.standard_normal((N, C, H, H)).astype(dtype)
    w = rng.standard_normal((O, C, k, k)).astype(dtype)
    OH = _conv.conv_out(H, k, s, p)
    n = N * OH * OH
    dz = rng.standard_normal((O, n)).astype(dtype)
    calls = {
        "fran im2col": fran_calls(x, w, s, p, dz, input_grad, "numpy"),
        "fran implicit": fran_calls(x, w, s, p, dz, input_grad, "numba"),
        "torch": torch_calls(torch, x, w, s, p, dz, input_grad),
    }
    for forward, both in calls.values():  # warm-up: compile, caches, allocator
        forward(), both()
    times = {(path, part): [] for path in PATHS for part in ("forward", "both")}
    for r in range(args.repeats):
        order = PATHS[r % 3 :] + PATHS[: r % 3]
        for part, i in (("forward", 0), ("both", 1)):
            for path in order:
                times[path, part].append(timed(calls[path][i]))
    macs = O * C * k * k * n
    flops = {"forward": 2 * macs, "both": 2 * macs * (3 if input_grad else 2)}
    row = {
        "network": net,
        "layer": name,
        "N": N,
        "shape": [C, H, H, O, k, s, p],
        "input_grad": input_grad,
        "path": fran_path(x, w, s, p),
    }
    for (path, part), t in times.items():
        entry = summary(t)
        entry["gflops"] = flops[part] / (entry["median_ms"] * 1e6)
        row[f"{path} {part}"] = entry
    return row


def cell(entry) -> str:
    return f"{entry['median_ms']:7.2f} ({entry['min_ms']:.2f}-{entry['max_ms']:.2f}) {entry['gflops']:5.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--pieces", type=int, default=2, help="the batch each layer sees: batch/pieces")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--only", default=None, help="one network's layers")
    ap.add_argument("--out", default="benchmarks/conv_shapes.json")
    args = ap.parse_args(argv)
    import threadpoolctl
    import torch

    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(1):
        blas = [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for i in threadpoolctl.threadpool_info()
        ]
        rows = [measure(layer, args, torch) for layer in LAYERS if args.only in (None, layer[0])]
    print(f"{args.dtype}, one thread, batch / {args.pieces}, {args.repeats} repeats; BLAS {blas}")
    print("median ms (min-max) GFLOP/s; fwd = forward, f+b = forward + backward")
    head = f"{'network':14s} {'layer':26s} {'N':>4s} {'path':9s}"
    for part in ("fwd", "f+b"):
        for path in PATHS:
            head += f" | {path + ' ' + part:30s}"
    print(head)
    for row in rows:
        line = f"{row['network']:14s} {row['layer']:26s} {row['N']:4d} {row['path']:9s}"
        for part in ("forward", "both"):
            for path in PATHS:
                line += f" | {cell(row[f'{path} {part}']):30s}"
        print(line)
    meta = {"dtype": args.dtype, "pieces": args.pieces, "repeats": args.repeats, "blas": blas}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
