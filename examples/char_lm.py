"""A character-level language model on English words, in the style of Karpathy's makemore.

    python examples/char_lm.py [--model transformer|rnn|lstm] [--epochs 10] [--seed 0]
                               [--out runs/char_lm] [--n-words N] [--batch-size 32] [--lr 5e-4]
                               [--samples 20] [--temperature 1.0] [--resume]

Each word is a sample of T = 1 + the longest word's length tokens over the 27 symbols '.a-z':
the input is '.' then the letters, the target the letters then '.' (the end), padding targets
are ignored (sequence_cross_entropy(ignore_index=-1)); so the model learns p(next | previous).

transformer (a small GPT, makemore's defaults):
    embedding(27, 64) -> position_embedding()                                         (T, 64)
    4 x [ residual([layernorm(), attention(4, causal=True, dropout)])
          residual([layernorm(), dense(256, gelu_tanh), dense(64)]) ]                  (T, 64)
    layernorm() -> dense(27)                                                          (T, 27)
rnn / lstm:   embedding(27, 64) -> rnn(64) or lstm(64) -> dense(27)

Trained with AdamW (betas 0.9, 0.99, weight decay 0.01 as makemore) under a linear warm-up
over the first half epoch into a cosine decay to 0 at the last step of --epochs (so resume to
the same --epochs to finish a run: a larger one follows another schedule from there). Dense layers
start from PyTorch's default U(+-1/sqrt(fan_in)) (init "torch"); the other layers draw as torch's
modules do, so tests/helpers/char_lm_twins.py's PyTorch twin starts from the same distribution.
Each epoch prints the train loss (mean over its batches) and the validation loss (10% of the
words, fixed for every seed: a permutation by default_rng(0)); the run ends by sampling new
words (--temperature, --sample-seed) and says which of them are in the training set.

Writes learning_curve.png, samples.txt, metrics.json, model.npz and checkpoint.npz into --out.
Get the words first with `python -m fran.data fetch words` (Debian's wamerican).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import _common
import numpy as np

import fran
import fran.data
import fran.io
import fran.tree
from fran import (
    attention,
    dense,
    embedding,
    layernorm,
    lstm,
    network,
    position_embedding,
    residual,
    rnn,
)
from fran.schedules import cosine, linear_warmup

NAME = "char_lm"
VOCAB = ".abcdefghijklmnopqrstuvwxyz"  # '.' (id 0) starts and ends every word, as makemore
IGNORE = -1  # the targets after a word's end
B1, B2, EPS, WEIGHT_DECAY = 0.9, 0.99, 1e-8, 0.01  # makemore's AdamW
VAL_FRACTION = 0.1
LOSS = fran.sequence_cross_entropy(IGNORE)


# --------------------------------------------------------------------------- data


def encode(words: list[str], T: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X (N, T) = '.', letters, '.'-padding; targets Y (N, T) = letters, '.', then IGNORE."""
    X = np.zeros((len(words), T), dtype=np.int64)
    Y = np.full((len(words), T), IGNORE, dtype=np.int64)
    for i, word in enumerate(words):
        ids = [VOCAB.index(c) for c in word]
        X[i, 1 : 1 + len(ids)] = ids
        Y[i, : len(ids)] = ids
        Y[i, len(ids)] = 0
    return X, Y


def decode(ids) -> str:
    """The letters up to the first end token."""
    out = []
    for i in ids:
        if i == 0:
            break
        out.append(VOCAB[int(i)])
    return "".join(out)


def split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """(train, validation): a fixed permutation, the last VAL_FRACTION held out."""
    order = np.random.default_rng(0).permutation(len(words))
    n_val = max(1, int(len(words) * VAL_FRACTION))
    shuffled = [words[i] for i in order]
    return shuffled[:-n_val], shuffled[-n_val:]


def load_data(args) -> dict:
    try:
        words = fran.data.load_words()
    except FileNotFoundError as exc:  # not fetched yet: the message says what to run
        raise _common.UsageError(str(exc)) from None
    if args.n_words is not None:  # a fixed subset spread over the alphabet, in list order
        if args.n_words > len(words):
            raise _common.UsageError(f"--n-words {args.n_words}: the list has {len(words)}")
        keep = np.random.default_rng(0).choice(len(words), args.n_words, replace=False)
        words = [words[i] for i in np.sort(keep)]
    train, val = split_words(words)
    T = 1 + max(len(w) for w in words)
    X, Y = encode(train, T)
    Xv, Yv = encode(val, T)
    return {"words": words, "train": train, "val": val, "T": T, "X": X, "Y": Y, "Xv": Xv, "Yv": Yv}


# --------------------------------------------------------------------------- model


def build(args) -> network:
    V, C = len(VOCAB), args.n_embd
    if args.model in ("rnn", "lstm"):
        recurrent = rnn(args.n_embd) if args.model == "rnn" else lstm(args.n_embd)
        return network([embedding(V, C), recurrent, dense(V)])
    blocks = []
    for _ in range(args.n_layer):
        blocks += [
            residual([layernorm(), attention(args.n_head, causal=True, dropout=args.dropout)]),
            residual([layernorm(), dense(4 * C, activation="gelu_tanh"), dense(C)]),
        ]
    return network([embedding(V, C), position_embedding(), *blocks, layernorm(), dense(V)])


def fresh_model(args, T: int) -> fran.Model:
    try:
        return fran.init_weights(build(args), 1, T, scheme="torch", seed=args.seed)
    except ValueError as exc:  # heads not dividing the width
        raise _common.UsageError(str(exc)) from None


def schedule(lr: float, epochs: int, steps_per_epoch: int):
    """Linear warm-up over the first half epoch, then cosine to 0 at the end of `epochs`."""
    warmup = max(1, steps_per_epoch // 2)
    return linear_warmup(cosine(lr, total_steps=max(1, epochs * steps_per_epoch - warmup)), warmup)


def optimizer(args, steps_per_epoch: int) -> fran.Optimizer:
    lr = schedule(args.lr, args.epochs, steps_per_epoch)
    return fran.adamw(lr, b1=B1, b2=B2, eps=EPS, weight_decay=WEIGHT_DECAY)


def batches(n: int, batch_size: int, seed: int, epoch: int):
    """The index batches train_nn draws for `epoch`: a permutation from default_rng([seed,
    epoch]) cut in order (tests/helpers/char_lm_twins.py feeds PyTorch the same)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def evaluate(model: fran.Model, X: np.ndarray, Y: np.ndarray) -> float:
    """The mean loss over every non-ignored position of (X, Y), in inference mode."""
    return fran.evaluate_nn(model, X, Y, loss=LOSS)["loss"]


def sample(model: fran.Model, n: int, temperature: float = 1.0, seed: int = 0) -> list[str]:
    """n new words, one letter at a time from softmax(logits / temperature)."""
    T = model.input_shape[0]
    rng = np.random.default_rng(seed)
    x = np.zeros((n, T), dtype=np.int64)  # '.', then what has been drawn (causal: the rest unused)
    for t in range(T - 1):
        logits = fran.predict(model, x)[:, t].astype(np.float64) / temperature
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        x[:, t + 1] = [rng.choice(len(VOCAB), p=row) for row in p]
    return [decode(row[1:]) for row in x]


# --------------------------------------------------------------------------- training


def train_epoch(model, data: dict, args) -> tuple:
    """One epoch of train_nn (integer ids, the shuffle of [seed, epoch]) with a progress bar;
    (model, mean batch loss, seconds)."""
    X, Y = data["X"], data["Y"]
    steps = -(-len(X) // args.batch_size)
    bar, on_batch, losses = _common.progress(model, args, steps)

    t0 = time.perf_counter()
    model = fran.train_nn(
        model,
        X,
        Y,
        optimizer=optimizer(args, steps),
        batch_size=args.batch_size,
        loss=LOSS,
        seed=args.seed,
        on_batch=on_batch,
    )
    seconds = time.perf_counter() - t0
    bar.close()
    return model, float(np.mean(losses)), seconds


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="char_lm.py", description="Train a character-level language model on English words."
    )
    p.add_argument("--model", choices=("transformer", "rnn", "lstm"), default="transformer")
    p.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="weights and shuffle seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs") / NAME, help="output folder")
    p.add_argument(
        "--n-words", type=int, default=None, help="a fixed random subset of n words (default all)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="words per step (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW peak learning rate (5e-4)")
    p.add_argument("--n-embd", type=int, default=64, help="width (and recurrent hidden size)")
    p.add_argument("--n-layer", type=int, default=4, help="transformer blocks (default 4)")
    p.add_argument("--n-head", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--dropout", type=float, default=0.0, help="attention-weight dropout (0)")
    p.add_argument("--samples", type=int, default=20, help="words to sample at the end (20)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1)")
    p.add_argument("--sample-seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "n_embd", "n_layer", "n_head"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.n_words is not None and args.n_words < 2:
        p.error(f"--n-words must be >= 2, got {args.n_words}")
    if args.samples < 0:
        p.error(f"--samples must be >= 0, got {args.samples}")
    for name in ("lr", "temperature"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            p.error(f"--{name} must be a finite number > 0, got {getattr(args, name)}")
    if not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    return args


RUN_ARGS = ("model", "seed", "n_words", "n_embd", "n_layer", "n_head", "dropout")


def start(args, T: int, say) -> tuple[fran.Model, list[dict]]:
    """A fresh model, or with --resume the checkpoint's (refusing one from another run)."""
    fresh = fresh_model(args, T)
    path = args.out / fran.io.CHECKPOINT_NAME
    if not args.resume:
        if path.exists():
            say(f"note: starting over; this replaces the checkpoint in {args.out}")
        return fresh, []
    found = fran.io.load_checkpoint(args.out)
    if found is None:
        say(f"--resume: no checkpoint in {args.out}; starting from scratch")
        return fresh, []
    model, metadata = found[0], found[1] or {}
    saved = metadata.get("args", {})
    differ = [
        f"--{k.replace('_', '-')} {saved.get(k)}"
        for k in RUN_ARGS
        if saved.get(k) != getattr(args, k)
    ]
    if metadata.get("example") != NAME or differ or model.input_shape != fresh.input_shape:
        raise _common.ResumeError(
            f"cannot resume from {path}: it was made by another run"
            + (f" ({', '.join(differ)})" if differ else "")
            + ".\nUse another --out, or drop --resume to start over (which overwrites it)."
        )
    say(f"resuming from {path} at epoch {model.epoch} (step {model.step})")
    return model, list(metadata.get("history", []))


def plot_learning_curve(history: list[dict], args, path: Path) -> None:
    plt = _common.plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train (mean over batches)")
    final = history[-1]["val_loss"] if history else float("nan")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label=f"validation (final {final:.4f})")
    ax.set(xlabel="epoch", ylabel="cross-entropy per character (nats)")
    ax.set_title(
        f"char_lm ({args.model}) on wamerican's words: learning curve\n"
        f"seed {args.seed}, batch {args.batch_size}, AdamW lr {args.lr:g}, warm-up + cosine",
        fontsize=11,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train (or resume) to --epochs, sample, write the reports; returns metrics.json's dict."""
    if _common.MISSING_EXTRAS is not None:
        sys.exit(f"error: the examples need matplotlib and tqdm ({_common.MISSING_EXTRAS})")
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else functools.partial(print, flush=True)
    _common.hold_out(args.out)  # a second run into this --out is refused, not interleaved
    data = load_data(args)
    model, history = start(args, data["T"], say)
    if not history:
        say(
            f"char_lm ({args.model}): {len(data['train'])} training words, "
            f"{len(data['val'])} validation words, T = {data['T']}"
        )
        say(fran.summary(model))
    while model.epoch < args.epochs:
        model, train_loss, seconds = train_epoch(model, data, args)
        t0 = time.perf_counter()
        val_loss = evaluate(model, data["Xv"], data["Yv"])
        entry = {
            "epoch": model.epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "train_seconds": seconds,
            "eval_seconds": time.perf_counter() - t0,
        }
        history.append(entry)
        say(
            f"epoch {model.epoch}/{args.epochs}: train loss {train_loss:.4f}, "
            f"val loss {val_loss:.4f} ({seconds:.1f} s)"
        )
        fran.io.save_checkpoint(
            args.out,
            model,
            metadata={"example": NAME, "args": _common.args_record(args), "history": history},
        )
    return report(model, data, args, history, say)


def report(model, data: dict, args, history: list[dict], say) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    words = sample(model, args.samples, args.temperature, args.sample_seed)
    train, val = set(data["train"]), set(data["val"])
    where = ["train" if w in train else "val" if w in val else "new" for w in words]
    (out / "samples.txt").write_text(
        "".join(f"{w}\t{k}\n" for w, k in zip(words, where, strict=True))
    )
    plot_learning_curve(history, args, out / "learning_curve.png")
    metadata = {"example": NAME, "args": _common.args_record(args), "history": history}
    metrics = {
        "example": NAME,
        "final": dict(history[-1])
        if history
        else {"val_loss": evaluate(model, data["Xv"], data["Yv"])},
        "history": history,
        "samples": [{"word": w, "in": k} for w, k in zip(words, where, strict=True)],
        "args": _common.args_record(args),
        "n_train": len(data["train"]),
        "n_val": len(data["val"]),
        "T": data["T"],
        "n_params": int(sum(a.size for a in fran.tree.tree_leaves(model.params))),
    }
    fran.io.write_json(out / "metrics.json", metrics)
    fran.save(out / "model.npz", model, metadata=metadata)
    if words:
        say(
            "samples: "
            + ", ".join(
                f"{w}" + ("" if k == "new" else f" ({k})")
                for w, k in zip(words, where, strict=True)
            )
        )
    say(f"final: val loss {metrics['final']['val_loss']:.4f}")
    say(
        f"wrote to {out}/: learning_curve.png, samples.txt, metrics.json, model.npz, checkpoint.npz"
    )
    return metrics


if __name__ == "__main__":
    _common.cli(main)
