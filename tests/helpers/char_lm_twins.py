"""examples/char_lm.py's PyTorch twin: the same layers (nn.Embedding, nn.MultiheadAttention with
the causal attn_mask, nn.LayerNorm, nn.Linear + GELU(approximate="tanh"), nn.RNN / nn.LSTM), the
pairing of its params with fran's (copy_into), its loss with the ignored positions, AdamW with
char_lm's settings, and its training epoch on char_lm's batches under char_lm's schedule.
tests/oracle/test_sequence_oracle.py checks that it computes what fran computes;
benchmarks/char_lm_peers.py trains both side by side.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fran

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

import char_lm  # noqa: E402  (examples/char_lm.py)


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
