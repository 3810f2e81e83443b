"""The three peer-model examples trained by fran and by PyTorch, side by side, several seeds.

    python benchmarks/peers.py [--seeds 3] [--epochs N] [--n-train 10000] [--threads 2]
                               [--only pytorch_mnist,keras_mnist,resnet_fmnist] [--out FILE.json]
                               [--paired]

For each network of examples/pytorch_mnist.py, keras_mnist.py and resnet_fmnist.py, trains fran
(the example's own build(), optimizer and data loader) and its PyTorch twin
(tests/helpers/peer_twins.py: same layers, same optimizer and hyper-parameters, same batch size, same images, the same schedule evaluated at
the same step) for --epochs epochs (default: each example's own default, so that the bench runs
the work the examples' own table shows) from seeds 0 .. seeds-1, alternating the frameworks run
by run (fran seed 0, torch seed 0, fran seed 1, ...). Both start from PyTorch's default
initialisation (fran: init_weights(..., scheme="torch")). Each run is scored once, after its
last epoch, on all 10,000 test images; the printed table gives test accuracy mean ± std (sample std over seeds) with
its standard error (std / sqrt(seeds)), the gap fran − PyTorch in PyTorch's stds, and seconds
per training epoch (mean over all epochs of all seeds, test scoring excluded) for both; the JSON
(--out) also holds every run's accuracy, epoch seconds and load average (1, 5, 15 min) after it.
Each framework shuffles with its own generator, so the runs match in distribution, not bitwise
(tests/oracle/test_peer_twins.py checks that, fed the same batches, params and dropout masks in
float64, each twin computes the same losses, gradients and steps as fran). --paired instead
trains each seed's fran model and a twin holding its initial params side by side on the same
batches with the same dropout masks (fran's, fed to the twin), in float32: their difference is
then the frameworks' alone (rounding), without the seeds' spread, and the table gives its mean ±
std over the seeds.
Both get --threads threads: torch.set_num_threads and FRAN_NUM_THREADS (OpenBLAS left alone).
"""

# ruff: noqa: E402  (FRAN_NUM_THREADS must be set before fran is imported)

import os
import sys


def _early_threads(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.partition("=")[2]
    return "2"


if __name__ == "__main__":
    os.environ["FRAN_NUM_THREADS"] = _early_threads(sys.argv[1:])

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import fran

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the twins live with the tests that check them

from helpers.peer_twins import (  # noqa: I001
    MODULES,
    NETWORKS,
    TORCH_NETS,
    fed_twin,
    recorded_masks,
    torch_epoch,
    torch_optimizer,
)

# ---------------------------------------------------------------- data and runs


def load_data(name: str, n_train: int) -> dict:
    ex = MODULES[name].EXAMPLE
    X, y = ex.load("train", n_train)
    Xt, yt = ex.load("test", None)
    if ex.validation_split:  # Keras' validation_split: the last 10% are not trained on
        cut = len(X) - int(len(X) * ex.validation_split)
        X, y = X[:cut], y[:cut]
    return {"X": X, "y": y, "Xt": Xt, "yt": yt, "batch": ex.batch_size}


def fran_run(name: str, data: dict, seed: int, epochs: int) -> tuple[float, list[float]]:
    ex = MODULES[name].EXAMPLE
    model = fran.init_weights(ex.build(), 28, 28, scheme="torch", seed=seed)
    steps = -(-len(data["X"]) // data["batch"])
    args = argparse.Namespace(lr=ex.lr, epochs=epochs)
    optimizer = ex.optimizer(args, steps)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model = fran.train_nn(
            model, data["X"], data["y"], optimizer=optimizer, batch_size=data["batch"]
        )
        seconds.append(time.perf_counter() - t0)
    return float(fran.evaluate_nn(model, data["Xt"], data["yt"])["accuracy"]), seconds


def torch_run(name: str, data: dict, seed: int, epochs: int) -> tuple[float, list[float]]:
    torch.manual_seed(seed)
    net = TORCH_NETS[name]()
    X, y = torch.from_numpy(data["X"]), torch.from_numpy(data["y"]).long()
    steps = -(-len(X) // data["batch"])
    opt, lr, clip = torch_optimizer(name, net.parameters(), steps, epochs)
    gen = torch.Generator().manual_seed(seed)
    step, seconds = 0, []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(X), generator=gen)
        step, _ = torch_epoch(net, opt, lr, clip, X, y, perm, data["batch"], step)
        seconds.append(time.perf_counter() - t0)
    net.eval()
    with torch.no_grad():
        Xt = torch.from_numpy(data["Xt"])
        pred = torch.cat([net(Xt[i : i + 500]).argmax(1) for i in range(0, len(Xt), 500)])
    return float((pred.numpy() == data["yt"]).mean()), seconds


def paired_run(name: str, data: dict, seed: int, epochs: int) -> tuple[float, float]:
    """fran (seed `seed`) and its twin holding fran's initial params, trained step by step on the
    same batches (train_nn's shuffle) with the same dropout masks: only the frameworks' float32
    rounding differs. (fran's test accuracy, the twin's.)"""
    ex = MODULES[name].EXAMPLE
    model = fran.init_weights(ex.build(), 28, 28, scheme="torch", seed=seed)
    X, y, batch = data["X"], data["y"], data["batch"]
    steps = -(-len(X) // batch)
    optimizer = ex.optimizer(argparse.Namespace(lr=ex.lr, epochs=epochs), steps)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    with recorded_masks() as masks:
        net = fed_twin(name, model, masks)
        opt, lr, clip = torch_optimizer(name, net.parameters(), steps, epochs)
        step = 0
        for epoch in range(epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(X))  # train_nn's
            for i in range(0, len(X), batch):
                idx = order[i : i + batch]
                # one piece: each dropout layer draws one mask of the whole batch, as the twin
                # takes it (cut batches draw a mask a piece, on parallel threads)
                batch_xy = (X[idx], y[idx])
                model, _ = fran.train_step(optimizer, fran.cross_entropy, model, batch_xy, pieces=1)
                step, _ = torch_epoch(
                    net, opt, lr, clip, Xt[idx], yt[idx], torch.arange(len(idx)), batch, step
                )
    net.eval()
    with torch.no_grad():
        Xte = torch.from_numpy(data["Xt"])
        pred = torch.cat([net(Xte[i : i + 500]).argmax(1) for i in range(0, len(Xte), 500)])
    fran_acc = float(fran.evaluate_nn(model, data["Xt"], data["yt"])["accuracy"])
    return fran_acc, float((pred.numpy() == data["yt"]).mean())


def paired_main(args, names: list[str]) -> dict:
    results = {}
    lines = [
        f"paired runs: {epochs_text(args)}, {args.seeds} seeds, first {args.n_train} training "
        "images; the twin starts from fran's params and gets fran's batches and dropout masks",
        "",
        "| network | fran test acc | PyTorch test acc | fran − PyTorch, paired |",
        "|---|---|---|---|",
    ]
    for name in names:
        data = load_data(name, args.n_train)
        runs = []
        for seed in range(args.seeds):
            fa, ta = paired_run(name, data, seed, epochs_of(name, args))
            load = [round(v, 2) for v in os.getloadavg()]
            runs.append({"seed": seed, "fran": fa, "torch": ta, "load": load})
            print(
                f"{name:14s} paired seed {seed}: fran {100 * fa:.2f}%  torch {100 * ta:.2f}%  "
                f"difference {100 * (fa - ta):+.2f}  (load {load[0]:.2f})",
                flush=True,
            )
        fm, _ = mean_std([r["fran"] for r in runs])
        tm, _ = mean_std([r["torch"] for r in runs])
        dm, ds = mean_std([r["fran"] - r["torch"] for r in runs])
        lines.append(
            f"| `{name}` | {100 * fm:.2f}% | {100 * tm:.2f}% "
            f"| {100 * dm:+.2f} ± {100 * ds:.2f} (s.e. {100 * ds / len(runs) ** 0.5:.2f}) |"
        )
        results[name] = runs
    print("\n".join(lines))
    return {"paired": results, "table": lines}


def epochs_of(name: str, args) -> int:
    """--epochs, or the example's own default."""
    return args.epochs or MODULES[name].EXAMPLE.epochs


def epochs_text(args) -> str:
    return f"{args.epochs} epochs" if args.epochs else "each example's default epochs"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


TABLE_HEAD = [
    "| network | epochs | fran test acc | PyTorch test acc | gap | fran s/epoch | PyTorch s/epoch "
    "| fran ≥ torch − 1 std |",
    "|---|---|---|---|---|---|---|---|",
]


def table_row(name: str, runs: dict) -> str:
    """One network's row: each framework's test accuracy as mean ± sample std (s.e. = std /
    sqrt(seeds)), the gap fran − PyTorch in units of PyTorch's std, seconds per epoch, and the
    done-criterion (fran's mean ≥ PyTorch's mean − one PyTorch std)."""
    cells = []
    for framework in ("fran", "torch"):
        accs = [r["test_accuracy"] for r in runs[framework]]
        mean, std = mean_std(accs)
        cells.append(
            f"{100 * mean:.2f}% ± {100 * std:.2f} (s.e. {100 * std / len(accs) ** 0.5:.2f})"
        )
    fa, _ = mean_std([r["test_accuracy"] for r in runs["fran"]])
    ta, ts = mean_std([r["test_accuracy"] for r in runs["torch"]])
    gap = f"{(fa - ta) / ts:+.2f} std" if ts > 0 else "n/a"
    fsec = statistics.fmean(s for r in runs["fran"] for s in r["epoch_seconds"])
    tsec = statistics.fmean(s for r in runs["torch"] for s in r["epoch_seconds"])
    ok = "yes" if fa >= ta - ts else "**no**"
    epochs = len(runs["fran"][0]["epoch_seconds"])
    return f"| `{name}` | {epochs} | {cells[0]} | {cells[1]} | {gap} | {fsec:.1f} | {tsec:.1f} | {ok} |"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    own = ", ".join(f"{n} {MODULES[n].EXAMPLE.epochs}" for n in NETWORKS)
    p.add_argument("--epochs", type=int, default=None, help=f"default: each example's own ({own})")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=",".join(NETWORKS))
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.add_argument(
        "--paired",
        action="store_true",
        help="instead: paired runs (the twin from fran's params, on fran's batches and masks)",
    )
    args = p.parse_args(argv)
    os.environ["FRAN_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n]
    if args.paired:
        record = paired_main(args, names)
        record["args"] = {k: str(v) for k, v in vars(args).items()}
        if args.out:
            args.out.write_text(json.dumps(record, indent=1))
        return record
    started = datetime.datetime.now(datetime.UTC)
    results = {}
    for name in names:
        data = load_data(name, args.n_train)
        runs = {"fran": [], "torch": []}
        for seed in range(args.seeds):
            for framework, fn in (("fran", fran_run), ("torch", torch_run)):
                acc, secs = fn(name, data, seed, epochs_of(name, args))
                load = [round(v, 2) for v in os.getloadavg()]  # 1, 5 and 15 minutes, at the end
                runs[framework].append(
                    {"seed": seed, "test_accuracy": acc, "epoch_seconds": secs, "load": load}
                )
                print(
                    f"{name:14s} {framework:5s} seed {seed}: test acc {100 * acc:.2f}%  "
                    f"{statistics.fmean(secs):.1f} s/epoch  (load {load[0]:.2f})",
                    flush=True,
                )
        results[name] = runs
    lines = [
        f"{epochs_text(args)}, {args.seeds} seeds, first {args.n_train} training images, "
        f"all 10,000 test images, {args.threads} threads; {started:%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, load average at the end "
        + " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "",
        *TABLE_HEAD,
    ]
    lines += [table_row(name, runs) for name, runs in results.items()]
    print("\n".join(lines))
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    record["table"] = lines
    record["torch"] = torch.__version__
    if args.out:
        args.out.write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
