"""examples/char_lm.py trained by fran and by its PyTorch twin, side by side, several seeds.

    python benchmarks/char_lm_peers.py [--seeds 3] [--epochs 2] [--n-words 4000]
                                       [--model transformer|rnn|lstm] [--threads 2] [--out FILE]
                                       [any other char_lm.py option: --n-embd 32 --n-layer 2 ...]

For each seed, fran trains the example's own model (char_lm.build, init "torch", AdamW with
makemore's betas and weight decay under char_lm.schedule, batches from char_lm.batches) and the
twin below trains the same layers in PyTorch (nn.Embedding, nn.MultiheadAttention with the
causal attn_mask, nn.LayerNorm, nn.Linear + GELU(approximate="tanh"), nn.RNN / nn.LSTM) from
torch's own initialisation (the distribution fran draws from), with torch.optim.AdamW, the same
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import char_lm  # examples/char_lm.py

import fran


class Block(nn.Module):
    """residual([layernorm, attention]) then residual([layernorm, dense 4C gelu_tanh, dense C])."""

    def __init__(self, C: int, heads: int, dropout: float, T: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.attn = nn.MultiheadAttention(C, heads, dropout=dropout, batch_first=True)
        self.fc, self.proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, args, T: int):
        super().__init__()
        V, C = len(char_lm.VOCAB), args.n_embd
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(
            [Block(C, args.n_head, args.dropout, T) for _ in range(args.n_layer)]
        )
        self.ln_f, self.head = nn.LayerNorm(C), nn.Linear(C, V)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe.weight
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class Recurrent(nn.Module):
    def __init__(self, args, T: int):
        super().__init__()
        V, C = len(char_lm.VOCAB), args.n_embd
        self.wte = nn.Embedding(V, C)
        self.rnn = (nn.RNN if args.model == "rnn" else nn.LSTM)(C, C, batch_first=True)
        self.head = nn.Linear(C, V)

    def forward(self, ids):
        return self.head(self.rnn(self.wte(ids))[0])


def twin(args, T: int) -> nn.Module:
    return GPT(args, T) if args.model == "transformer" else Recurrent(args, T)


def pairs(params: tuple, net: nn.Module) -> list:
    """(name, fran array, torch param, transposed) for every param, in fran's tree order."""
    out = []

    def dense(name, p, lin):
        out.extend(
            [(f"{name}.w", p["w"], lin.weight, True), (f"{name}.b", p["b"], lin.bias, False)]
        )

    def norm(name, p, ln):
        out.extend([(f"{name}.w", p["w"], ln.weight, False), (f"{name}.b", p["b"], ln.bias, False)])

    out.append(("wte", params[0]["w"], net.wte.weight, False))
    if isinstance(net, Recurrent):
        for k in ("w_ih", "w_hh", "b_ih", "b_hh"):
            theirs = k.replace("w_", "weight_").replace("b_", "bias_") + "_l0"
            out.append((f"rnn.{k}", params[1][k], getattr(net.rnn, theirs), False))
        dense("head", params[2], net.head)
        return out
    out.append(("wpe", params[1]["p"], net.wpe.weight, False))
    for i, block in enumerate(net.blocks):
        (ln1, attn), (ln2, fc, proj) = params[2 + 2 * i]["f"], params[3 + 2 * i]["f"]
        norm(f"block{i}.ln1", ln1, block.ln1)
        for ours, theirs in (
            ("w_in", block.attn.in_proj_weight),
            ("b_in", block.attn.in_proj_bias),
            ("w_out", block.attn.out_proj.weight),
            ("b_out", block.attn.out_proj.bias),
        ):
            out.append((f"block{i}.attn.{ours}", attn[ours], theirs, False))
        norm(f"block{i}.ln2", ln2, block.ln2)
        dense(f"block{i}.fc", fc, block.fc)
        dense(f"block{i}.proj", proj, block.proj)
    norm("ln_f", params[-2], net.ln_f)
    dense("head", params[-1], net.head)
    return out


def copy_into(model: fran.Model, net: nn.Module) -> None:
    """The twin holds fran's params (dense weights transposed to torch's (out, in))."""
    with torch.no_grad():
        for _, ours, theirs, transposed in pairs(model.params, net):
            a = torch.tensor(np.array(ours.T if transposed else ours), dtype=theirs.dtype)
            theirs.copy_(a)


def torch_loss(net, ids: np.ndarray, targets: np.ndarray):
    logits = net(torch.as_tensor(ids))
    V = logits.shape[-1]
    return F.cross_entropy(
        logits.reshape(-1, V), torch.as_tensor(targets).reshape(-1), ignore_index=char_lm.IGNORE
    )


def torch_optimizer(net, args):
    return torch.optim.AdamW(
        net.parameters(),
        lr=args.lr,
        betas=(char_lm.B1, char_lm.B2),
        eps=char_lm.EPS,
        weight_decay=char_lm.WEIGHT_DECAY,
    )


def torch_epoch(net, opt, data: dict, args, epoch: int, step: int) -> tuple[int, list[float]]:
    """One epoch on char_lm's batches, the lr set to fran's schedule at each step."""
    order = char_lm.batches(len(data["X"]), args.batch_size, args.seed, epoch)
    lr = char_lm.schedule(args.lr, args.epochs, len(order))
    net.train()
    losses = []
    for idx in order:
        for group in opt.param_groups:
            group["lr"] = lr(step)
        opt.zero_grad()
        loss = torch_loss(net, data["X"][idx], data["Y"][idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
    return step, losses


def torch_validation(net, data: dict) -> float:
    net.eval()
    with torch.no_grad():
        return torch_loss(net, data["Xv"], data["Yv"]).item()


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
