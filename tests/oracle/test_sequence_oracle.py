"""PyTorch as the oracle for the sequence layers and loss, in float64 over random configurations:
forward and every gradient (inputs and params) of embedding, position_embedding, layernorm,
gelu (both forms), dense on (T, C), rnn, lstm, attention (torch.nn.MultiheadAttention, causal or
not; with dropout, torch's formula fed fran's mask), and sequence_cross_entropy against
F.cross_entropy with ignore_index; each layer's init against the law torch draws from; and the
char-LM twin of tests/helpers/char_lm_twins.py against fran (the same loss, gradients and steps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fran
from fran import registry
from fran.tree import freeze

torch.set_num_threads(1)
RTOL = 1e-10
SOME = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def close(actual, expected, what, rtol=RTOL):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=10 * rtol * scale, err_msg=what)


def t(a, grad=True):
    return torch.tensor(np.array(a), dtype=torch.float64, requires_grad=grad)


def params_for(spec, shape, rng):
    """Random float64 params, away from init (so no gradient is trivially right)."""
    p = fran.init(spec, shape, rng, dtype=np.float64)
    return freeze({k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()})


def fran_all(spec, params, x, dy, **kw):
    y, pullback = fran.vjp(spec, params, freeze(np.array(x)), **kw)
    grads, dx = pullback(freeze(np.array(dy)))
    return y, grads, dx


def torch_grads(y, dy, *tensors):
    return torch.autograd.grad(y, tensors, t(dy, grad=False))


# ---------------------------------------------------------------- per-position layers


@SOME
@given(seed=seeds, approximate=st.sampled_from(["none", "tanh"]))
def test_dense_on_sequences_with_gelu(seed, approximate):
    rng = np.random.default_rng(seed)
    N, T, C, O = (int(v) for v in rng.integers(1, 5, 4))
    act = "gelu" if approximate == "none" else "gelu_tanh"
    spec = fran.dense(O, activation=act)
    p = params_for(spec, (T, C), rng)
    x, dy = rng.standard_normal((N, T, C)) * 2, rng.standard_normal((N, T, O))
    y, g, dx = fran_all(spec, p, x, dy)
    tx, tw, tb = t(x), t(p["w"]), t(p["b"])
    ty = F.gelu(tx @ tw + tb, approximate=approximate)
    close(y, ty, "y")
    gx, gw, gb = torch_grads(ty, dy, tx, tw, tb)
    close(dx, gx, "dx")
    close(g["w"], gw, "dw")
    close(g["b"], gb, "db")


@SOME
@given(seed=seeds)
def test_layernorm(seed):
    rng = np.random.default_rng(seed)
    N, T, C = (int(v) for v in rng.integers(1, 6, 3))
    eps = float(rng.choice([1e-5, 1e-2]))
    spec = fran.layernorm(eps)
    p = params_for(spec, (T, C), rng)
    x, dy = rng.normal(1, 2, (N, T, C)), rng.standard_normal((N, T, C))
    y, g, dx = fran_all(spec, p, x, dy)
    ln = torch.nn.LayerNorm(C, eps=eps, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(p["w"]))
        ln.bias.copy_(torch.tensor(p["b"]))
    tx = t(x)
    ty = ln(tx)
    close(y, ty, "y")
    gx, gw, gb = torch_grads(ty, dy, tx, ln.weight, ln.bias)
    close(dx, gx, "dx")
    close(g["w"], gw, "dw")
    close(g["b"], gb, "db")


@SOME
@given(seed=seeds)
def test_embedding_and_position_embedding(seed):
    rng = np.random.default_rng(seed)
    N, T, V, C = (int(v) for v in rng.integers(1, 6, 4))
    tok, pos = fran.embedding(V, C), fran.position_embedding()
    net = fran.network([tok, pos])
    p = (params_for(tok, (T,), rng), params_for(pos, (T, C), rng))
    ids = rng.integers(0, V, (N, T))
    dy = rng.standard_normal((N, T, C))
    y, pullback = fran.vjp(net, p, freeze(ids.astype(np.float64)))
    (gtok, gpos), _ = pullback(freeze(dy), input_grad=False)
    wte = torch.nn.Embedding(V, C, dtype=torch.float64)
    wpe = torch.nn.Embedding(T, C, dtype=torch.float64)
    with torch.no_grad():
        wte.weight.copy_(torch.tensor(p[0]["w"]))
        wpe.weight.copy_(torch.tensor(p[1]["p"]))
    ty = wte(torch.tensor(ids)) + wpe(torch.arange(T))
    close(y, ty, "y")
    gte, gpe = torch_grads(ty, dy, wte.weight, wpe.weight)
    close(gtok["w"], gte, "d wte")
    close(gpos["p"], gpe, "d wpe")


# ---------------------------------------------------------------- recurrent layers


@SOME
@given(seed=seeds, kind=st.sampled_from(["rnn", "lstm"]))
def test_recurrent(seed, kind):
    rng = np.random.default_rng(seed)
    N, T, C, H = (int(v) for v in rng.integers(1, 6, 4))
    spec = fran.rnn(H) if kind == "rnn" else fran.lstm(H)
    p = params_for(spec, (T, C), rng)
    x, dy = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, H))
    y, g, dx = fran_all(spec, p, x, dy)
    make = torch.nn.RNN if kind == "rnn" else torch.nn.LSTM
    net = make(C, H, batch_first=True, dtype=torch.float64)
    names = {
        "w_ih": "weight_ih_l0",
        "w_hh": "weight_hh_l0",
        "b_ih": "bias_ih_l0",
        "b_hh": "bias_hh_l0",
    }
    with torch.no_grad():
        for ours, theirs in names.items():
            getattr(net, theirs).copy_(torch.tensor(p[ours]))
    tx = t(x)
    ty = net(tx)[0]
    close(y, ty, "y")
    tparams = [getattr(net, theirs) for theirs in names.values()]
    gx, *gp = torch_grads(ty, dy, tx, *tparams)
    close(dx, gx, "dx")
    for ours, gt in zip(names, gp, strict=True):
        close(g[ours], gt, f"d{ours}")


# ---------------------------------------------------------------- attention


def _torch_mha(p, heads, causal, T, C):
    mha = torch.nn.MultiheadAttention(C, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(p["w_in"]))
        mha.in_proj_bias.copy_(torch.tensor(p["b_in"]))
        mha.out_proj.weight.copy_(torch.tensor(p["w_out"]))
        mha.out_proj.bias.copy_(torch.tensor(p["b_out"]))
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    params = (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)
    return (lambda x: mha(x, x, x, attn_mask=mask, need_weights=False)[0]), params


@SOME
@given(seed=seeds, causal=st.booleans())
def test_attention_against_multihead_attention(seed, causal):
    rng = np.random.default_rng(seed)
    N, T = (int(v) for v in rng.integers(1, 6, 2))
    heads, d = (int(v) for v in rng.integers(1, 4, 2))
    C = heads * d
    spec = fran.attention(heads, causal=causal)
    p = params_for(spec, (T, C), rng)
    x, dy = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, C))
    y, g, dx = fran_all(spec, p, x, dy)
    mha, tparams = _torch_mha(p, heads, causal, T, C)
    tx = t(x)
    ty = mha(tx)
    close(y, ty, "y")
    gx, *gp = torch_grads(ty, dy, tx, *tparams)
    close(dx, gx, "dx")
    for name, gt in zip(("w_in", "b_in", "w_out", "b_out"), gp, strict=True):
        close(g[name], gt, f"d{name}")


@SOME
@given(seed=seeds, causal=st.booleans(), rate=st.sampled_from([0.1, 0.5]))
def test_attention_dropout_in_training_is_torchs_formula_with_the_same_mask(seed, causal, rate):
    """MultiheadAttention's dropout (F.dropout on the softmax weights) cannot share fran's random
    numbers, so torch computes the same formula with fran's mask, redrawn from the same Generator."""
    rng = np.random.default_rng(seed)
    N, T = (int(v) for v in rng.integers(1, 6, 2))
    heads, d = (int(v) for v in rng.integers(1, 4, 2))
    C = heads * d
    spec = fran.attention(heads, causal=causal, dropout=rate)
    p = params_for(spec, (T, C), rng)
    x, dy = rng.standard_normal((N, T, C)), rng.standard_normal((N, T, C))
    rules = registry.rules_for(spec)
    y, pullback = rules.vjp(spec, p, freeze(x), training=True, rng=np.random.default_rng(seed))
    g, dx = pullback(freeze(dy))
    keep = np.random.default_rng(seed).random((N, heads, T, T)) >= rate
    m = torch.tensor(keep / (1 - rate))

    tx = t(x)
    tp = {k: t(v) for k, v in p.items()}
    q, k, v = (
        z.reshape(N, T, heads, d).transpose(1, 2)
        for z in F.linear(tx, tp["w_in"], tp["b_in"]).split(C, dim=-1)
    )
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    o = (torch.softmax(s, dim=-1) * m) @ v
    ty = F.linear(o.transpose(1, 2).reshape(N, T, C), tp["w_out"], tp["b_out"])
    close(y, ty, "y")
    gx, *gp = torch_grads(ty, dy, tx, *tp.values())
    close(dx, gx, "dx")
    for name, gt in zip(tp, gp, strict=True):
        close(g[name], gt, f"d{name}")
    dropped = 1 - keep.mean()  # the law of F.dropout: each weight dropped with probability rate
    assert keep.size < 50 or abs(dropped - rate) < 4 * math.sqrt(rate * (1 - rate) / keep.size)


# ---------------------------------------------------------------- the loss


@SOME
@given(seed=seeds, ignore=st.sampled_from([None, -1, 0, 3]))
def test_sequence_cross_entropy(seed, ignore):
    rng = np.random.default_rng(seed)
    N, T, V = (int(v) for v in rng.integers(1, 6, 3))
    logits = rng.standard_normal((N, T, V)) * 3
    target = rng.integers(0, V, (N, T))
    if ignore == -1:
        target[rng.random((N, T)) < 0.3] = -1
    target.flat[0] = 0 if ignore != 0 else min(1, V - 1)  # at least one position counts
    if ignore == 0 and V == 1:
        ignore = None
    value, grad = fran.sequence_cross_entropy(ignore).fn(freeze(logits), freeze(target))
    tz = t(logits)
    tl = F.cross_entropy(
        tz.reshape(-1, V),
        torch.tensor(target.reshape(-1)),
        ignore_index=-100 if ignore is None else ignore,
    )
    assert abs(value - tl.item()) <= 1e-12 * max(1, abs(tl.item()))
    (gz,) = torch.autograd.grad(tl, tz)
    close(grad, gz, "dlogits")


# ---------------------------------------------------------------- init: torch's laws


def _law(a):
    a = np.asarray(a.detach().numpy() if isinstance(a, torch.Tensor) else a).ravel()
    return float(np.abs(a).max()), float(a.std()), float(a.mean())


def _same_law(ours, theirs, what):
    """Same std, mean and range, to within sampling error (about 6 standard errors)."""
    (m1, s1, mu1), (m2, s2, mu2) = _law(ours), _law(theirs)
    rel = max(0.03, 6 / math.sqrt(np.size(ours)))
    assert abs(s1 - s2) <= rel * s2, f"{what}: std {s1} vs torch {s2}"
    assert abs(m1 - m2) <= max(rel, 0.1) * m2, f"{what}: max |w| {m1} vs torch {m2}"
    assert abs(mu1 - mu2) <= rel * s2, f"{what}: mean {mu1} vs torch {mu2}"


def test_init_draws_from_torchs_distributions():
    torch.manual_seed(0)
    T, C, H, V = 5, 96, 80, 300
    ours = fran.init(fran.embedding(V, C), (T,), 0, dtype=np.float64)
    _same_law(ours["w"], torch.nn.Embedding(V, C).weight, "embedding")
    ours = fran.init(fran.position_embedding(), (400, C), 0, dtype=np.float64)
    _same_law(ours["p"], torch.nn.Embedding(400, C).weight, "position_embedding")
    ours = fran.init(fran.layernorm(), (T, C), 0, dtype=np.float64)
    ln = torch.nn.LayerNorm(C)
    close(ours["w"], ln.weight, "layernorm w")
    close(ours["b"], ln.bias, "layernorm b")
    for ours_spec, theirs in (
        (fran.rnn(H), torch.nn.RNN(C, H)),
        (fran.lstm(H), torch.nn.LSTM(C, H)),
    ):
        ours = fran.init(ours_spec, (T, C), 0, dtype=np.float64)
        for k in ("w_ih", "w_hh", "b_ih", "b_hh"):
            theirs_w = getattr(theirs, k.replace("w_", "weight_").replace("b_", "bias_") + "_l0")
            assert ours[k].shape == tuple(theirs_w.shape)
            _same_law(ours[k], theirs_w, f"{ours_spec!r} {k}")
    mha = torch.nn.MultiheadAttention(C, 4)
    ours = fran.init(fran.attention(4), (T, C), 0, dtype=np.float64)
    _same_law(ours["w_in"], mha.in_proj_weight, "attention w_in")
    _same_law(ours["w_out"], mha.out_proj.weight, "attention w_out")
    close(ours["b_in"], mha.in_proj_bias, "attention b_in")
    close(ours["b_out"], mha.out_proj.bias, "attention b_out")


# ---------------------------------------------------------------- the char-LM twin


def _twin_modules():
    from helpers import char_lm_twins  # noqa: PLC0415  (imports the example only now)

    return char_lm_twins, char_lm_twins.char_lm


def _words(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    return ["".join(rng.choice(letters, int(rng.integers(1, 7)))) for _ in range(n)]


@pytest.mark.parametrize("kind", ["transformer", "rnn", "lstm"])
def test_char_lm_twin_computes_frans_loss_gradients_and_steps(kind):
    """tests/helpers/char_lm_twins.py's twin holding fran's float64 params: one batch's loss and
    every gradient, then two epochs (a partial last batch each) of AdamW under the schedule."""
    peers, char_lm = _twin_modules()
    argv = ["--model", kind, "--n-embd", "8", "--n-layer", "2", "--n-head", "2"]
    args = char_lm.parse_args(
        [*argv, "--epochs", "2", "--batch-size", "8", "--lr", "1e-2", "--quiet"]
    )
    train, val = char_lm.split_words(_words(40, 0))
    T = 1 + max(len(w) for w in train + val)
    (X, Y), (Xv, Yv) = char_lm.encode(train, T), char_lm.encode(val, T)
    data = {"train": train, "val": val, "T": T, "X": X, "Y": Y, "Xv": Xv, "Yv": Yv}
    model = fran.init_weights(char_lm.build(args), 1, T, scheme="torch", seed=0, dtype=np.float64)
    net = peers.twin(args, T).double()
    peers.copy_into(model, net)

    y, pullback = fran.vjp(model.spec, model.params, X[:8].astype(np.float64), training=True, key=0)
    value, dy = char_lm.LOSS.fn(y, Y[:8])
    grads, _ = pullback(dy)
    net.train()
    loss = peers.torch_loss(net, X[:8], Y[:8])
    loss.backward()
    assert abs(value - loss.item()) <= 1e-12 * abs(loss.item())
    for name, ours, theirs, transposed in peers.pairs(grads, net):
        close(ours, theirs.grad.T if transposed else theirs.grad, f"d{name}")

    opt = peers.torch_optimizer(net, args)
    step = 0
    for epoch in range(2):
        model, fran_mean, _ = char_lm.train_epoch(model, data, args)
        step, torch_losses = peers.torch_epoch(net, opt, data, args, epoch, step)
        assert abs(fran_mean - np.mean(torch_losses)) <= 1e-10, (epoch, fran_mean, torch_losses)
    assert model.step == step == 10
    for name, ours, theirs, transposed in peers.pairs(model.params, net):
        close(ours, theirs.T if transposed else theirs, name, rtol=1e-8)
    assert abs(char_lm.evaluate(model, Xv, Yv) - peers.torch_validation(net, data)) <= 1e-10
