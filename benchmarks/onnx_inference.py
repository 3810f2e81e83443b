"""Inference on the exported LeNet-5: ONNX Runtime versus fran's predict versus PyTorch.

    python benchmarks/onnx_inference.py [--n 10000] [--repeats 7] [--threads N] [--batch 500]
                                        [--out FILE.json]

One LeNet-5 (examples/lenet5_mnist.py, init_weights seed 0, float32) is exported with
fran.onnx.export; ONNX Runtime runs that file (CPU provider, intra-op threads = --threads, one
session.run on all --n images), fran runs `predict` (its batches of --batch, split across
threads), and PyTorch runs the same weights in its twin (tests/helpers/torch_models.lenet5 with the
softmax, torch.set_num_threads(--threads), batches of --batch under no_grad). First all three
outputs are checked to agree within 1e-5; then each framework is timed --repeats times,
alternating (ort 1, fran 1, torch 1, ort 2, ...) after one untimed warm-up each, on the same
synthetic images (uniform in [0, 1], fixed seed). Prints and writes (atomically, --out) the
medians and the ratios to ONNX Runtime. Needs onnxruntime and torch (the `bench` environment's
torch, plus `pip install onnxruntime`).
"""

# ruff: noqa: E402  (the thread-count variables must be set before numpy or torch is imported)

import os
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FRAN_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else None
        if arg.startswith("--threads="):
            value = arg.partition("=")[2]
        if value is not None:
            try:
                return max(1, int(value))
            except ValueError:
                break  # argparse reports it
    return os.cpu_count() or 1


if __name__ == "__main__":
    for _var in THREAD_VARS:
        os.environ[_var] = str(_threads_from_argv(sys.argv[1:]))

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [] if importlib.util.find_spec("fran") else [str(REPO)]  # run from a checkout
sys.path.insert(0, str(REPO / "examples"))

import lenet5_mnist  # noqa: I001  (examples/ is on the path only now)

import fran
import fran.io
import fran.onnx


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="images (default 10,000)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per framework (default 7)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for all three")
    p.add_argument("--batch", type=int, default=500, help="fran's and torch's batch (default 500)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    for name in ("n", "repeats", "threads", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def torch_twin(model):
    """PyTorch's LeNet-5 holding fran's weights (dense w transposed), with the final softmax."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))  # the twin networks live with the tests
    from helpers import torch_models

    net = torch.nn.Sequential(*torch_models.lenet5(), torch.nn.Softmax(dim=1)).eval()
    convs = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    params = [p for p in model.params if p]
    with torch.no_grad():
        for m, p in zip(convs, params, strict=True):
            w = p["w"] if isinstance(m, torch.nn.Conv2d) else p["w"].T
            m.weight.copy_(torch.from_numpy(np.array(w)))  # a writable copy
            m.bias.copy_(torch.from_numpy(np.array(p["b"])))
    return net


def main(argv=None) -> dict:
    args = parse(argv)
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    model = fran.init_weights(lenet5_mnist.build(), 28, 28, seed=0)
    X = np.random.default_rng(0).random((args.n, 1, 28, 28), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = fran.onnx.export(model, Path(folder) / "lenet5.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    net = torch_twin(model)

    def run_ort():
        return session.run(None, {"input": X})[0]

    def run_fran():
        return fran.predict(model, X, batch_size=args.batch)

    def run_torch():
        with torch.no_grad():
            xt = torch.from_numpy(X)
            return torch.cat(
                [net(xt[i : i + args.batch]) for i in range(0, len(X), args.batch)]
            ).numpy()

    runs = {"onnxruntime": run_ort, "fran": run_fran, "torch": run_torch}
    outputs = {name: f() for name, f in runs.items()}  # the untimed warm-ups
    for name in ("fran", "torch"):
        gap = float(np.abs(outputs[name] - outputs["onnxruntime"]).max())
        if gap > 1e-5:
            raise SystemExit(f"error: {name} and ONNX Runtime differ by {gap:.3g} on LeNet-5")
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, f in runs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "n": args.n, "threads": args.threads, "batch": args.batch, "repeats": args.repeats,
        "versions": {"fran": fran.__version__, "onnxruntime": ort.__version__, "torch": torch.__version__},
        "seconds": times, "median_seconds": medians,
        "ratio_to_onnxruntime": {k: v / medians["onnxruntime"] for k, v in medians.items()},
    }  # fmt: skip
    print(
        f"LeNet-5 inference on {args.n:,} images, {args.threads} threads, median of {args.repeats}:"
    )
    for name, m in medians.items():
        ratio = result["ratio_to_onnxruntime"][name]
        print(
            f"  {name:12s} {m * 1e3:9.1f} ms  {args.n / m:12,.0f} images/s  {ratio:5.2f}x ONNX Runtime"
        )
    if args.out is not None:
        fran.io.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
