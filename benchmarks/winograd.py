"""Per-call timings of a 3x3 stride-1 conv2d: the im2col / output-side kernels against Winograd.

OPENBLAS_NUM_THREADS=1 FRAN_NUM_THREADS=1 python benchmarks/winograd.py [--repeats N] [--batch N]
Forward is lay_out + correlate, backward correlate_vjp (with dx); old and new alternate in one
process and each figure is the median in milliseconds. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fran.layers import _conv, _winograd

SHAPES = [  # C, O, H (= W), padding: the 3x3 convs of the example networks, then the boundary
    (1, 32, 28, 0),  # first convs (FMNIST CNN, PyTorch's and Keras' MNIST nets; ResNet: 1 -> 16)
    (1, 16, 28, 1),
    (32, 64, 13, 0),  # FMNIST CNN, Keras MNIST
    (32, 64, 26, 0),  # PyTorch MNIST
    (16, 16, 28, 1),  # ResNet
    (32, 32, 14, 1),
    (6, 16, 12, 0),  # LeNet-5
    (16, 32, 14, 1),
    (24, 24, 14, 1),
    (32, 16, 14, 1),
    (64, 32, 13, 0),
    (32, 32, 9, 0),
    (32, 32, 10, 0),
    (32, 64, 14, 0),
    (32, 64, 23, 0),
    (64, 64, 13, 0),
    (64, 64, 14, 0),
    (32, 32, 28, 1),
]


def old_lay_out(x, w, p):
    _winograd.ENABLED = False
    try:
        return _conv.lay_out(x, w, 1, p)
    finally:
        _winograd.ENABLED = True


def timed(f, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


def one_shape(C, O, H, p, batch, dtype, repeats, rng):
    """Median milliseconds {f0, f1, b0, b1}: forward, backward; 0 the old kernels, 1 Winograd."""
    x = rng.standard_normal((batch, C, H, H)).astype(dtype)
    w = rng.standard_normal((O, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    OH = H + 2 * p - 2
    dz = rng.standard_normal((O, batch * OH * OH)).astype(dtype)
    t_old, t_new = old_lay_out(x, w, p), _winograd.lay_out(x, w, p)
    runs = {
        "f0": lambda: _conv.correlate(old_lay_out(x, w, p), b),
        "f1": lambda: _winograd.correlate(_winograd.lay_out(x, w, p), b),
        "b0": lambda: _conv.correlate_vjp(t_old, dz),
        "b1": lambda: _winograd.correlate_vjp(t_new, dz),
    }
    times = {k: [] for k in runs}
    for _ in range(repeats):  # alternate, so that a busy moment hits both paths alike
        for k, f in runs.items():
            times[k] += timed(f, 1)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--shapes", help="C,O,H,padding;... instead of SHAPES")
    a = ap.parse_args()
    shapes = SHAPES
    if a.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes.split(";")]
    rng = np.random.default_rng(0)
    print(f"batch {a.batch}, {a.dtype}; median ms per call, old kernels / Winograd")
    print("| C -> O | H x W, padding | forward | backward (with dx) | rule picks |")
    print("|---|---|---|---|---|")
    for C, O, H, p in shapes:
        ms = one_shape(C, O, H, p, a.batch, a.dtype, a.repeats, rng)
        pick = "W" if _winograd.pays(C, O, H + 2 * p - 2, H + 2 * p - 2) else "old"
        print(
            f"| {C} -> {O} | {H} x {H}, {p} | {ms['f0']:.2f} / {ms['f1']:.2f} "
            f"| {ms['b0']:.2f} / {ms['b1']:.2f} | {pick} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
