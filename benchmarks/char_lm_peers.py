"""examples/char_lm.py trained by fran and by its PyTorch twin, side by side, several seeds.

    python benchmarks/char_lm_peers.py [--seeds 3] [--epochs 2] [--n-words 4000]
                                       [--model transformer|rnn|lstm] [--threads 2] [--out FILE]
                                       [any other char_lm.py option: --n-embd 32 --n-layer 2 ...]

For each seed, fran trains the example's own model (char_lm.build, init "torch", AdamW with
makemore's betas and weight decay under char_lm.schedule, batches from char_lm.batches) and its
twin (tests/helpers/char_lm_twins.py) trains the same layers in PyTorch (nn.Embedding,
nn.MultiheadAttention with the causal attn_mask, nn.LayerNorm, nn.Linear + GELU(approximate="tanh"),
nn.RNN / nn.LSTM) from torch's own initialisation (the distribution fran draws from), with torch.optim.AdamW, the same
schedule evaluated at the same step, the same batches in the same order and the same ignored
positions (F.cross_entropy(ignore_index=-1)). After every epoch both score the validation words
(the mean loss over their non-ignored positions). The table gives the final validation loss
mean +- std over the seeds, the gap fran - PyTorch in PyTorch's stds, and seconds per training
epoch (meaningful only on a quiet machine). tests/oracle/test_sequence_oracle.py checks that the
twin, holding fran's params in float64, computes the same loss, gradients and steps as fran.
Both get --threads threads: torch.set_num_threads and FRAN_NUM_THREADS.
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the twin lives with the tests that check it

from helpers.char_lm_twins import (  # noqa: I001
    char_lm,
    torch_epoch,
    torch_optimizer,
    torch_validation,
    twin,
)


def fran_run(args, data: dict) -> tuple[list[float], list[float]]:
    model = char_lm.fresh_model(args, data["T"])
    val, seconds = [], []
    while model.epoch < args.epochs:
        model, _, s = char_lm.train_epoch(model, data, args)
        val.append(char_lm.evaluate(model, data["Xv"], data["Yv"]))
        seconds.append(s)
    return val, seconds


def torch_run(args, data: dict) -> tuple[list[float], list[float]]:
    torch.manual_seed(args.seed)
    net = twin(args, data["T"])
    opt = torch_optimizer(net, args)
    val, seconds, step = [], [], 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        step, _ = torch_epoch(net, opt, data, args, epoch, step)
        seconds.append(time.perf_counter() - t0)
        val.append(torch_validation(net, data))
    return val, seconds


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="char_lm_peers.py", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write every run's numbers as JSON")
    ours, rest = p.parse_known_args(argv)
    defaults = ["--epochs", "2", "--n-words", "4000", "--quiet"]
    torch.set_num_threads(ours.threads)
    runs = {"fran": [], "torch": []}
    data = None
    for seed in range(ours.seeds):
        args = char_lm.parse_args([*defaults, *rest, "--seed", str(seed)])
        data = data or char_lm.load_data(args)
        for name, run in (("fran", fran_run), ("torch", torch_run)):
            val, seconds = run(args, data)
            runs[name].append({"seed": seed, "val_loss": val, "epoch_seconds": seconds,
                               "loadavg": list(os.getloadavg())})  # fmt: skip
            print(f"{name:5s} seed {seed}: val loss per epoch {[round(v, 4) for v in val]}, "
                  f"{statistics.fmean(seconds):.1f} s/epoch", flush=True)  # fmt: skip
    (fm, fs), (tm, ts) = (mean_std([r["val_loss"][-1] for r in runs[k]]) for k in ("fran", "torch"))
    fe, te = (statistics.fmean(s for r in runs[k] for s in r["epoch_seconds"]) for k in runs)
    print(f"\n{'':8s}{'val loss (mean +- std)':>26s}{'s/epoch':>10s}")
    print(f"{'fran':8s}{fm:>18.4f} +- {fs:.4f}{fe:>10.1f}")
    print(f"{'PyTorch':8s}{tm:>18.4f} +- {ts:.4f}{te:>10.1f}")
    gap = (fm - tm) / ts if ts > 0 else float("nan")
    print(f"fran - PyTorch = {fm - tm:+.4f} ({gap:+.2f} PyTorch stds)")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "processor": platform.processor(),
        "threads": ours.threads,
        "args": char_lm._common.args_record(char_lm.parse_args([*defaults, *rest])),
        "n_train": len(data["X"]),
        "n_val": len(data["Xv"]),
        "runs": runs,
        "summary": {"fran": [fm, fs, fe], "torch": [tm, ts, te], "gap_in_torch_stds": gap},
    }
    if ours.out is not None:
        ours.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
