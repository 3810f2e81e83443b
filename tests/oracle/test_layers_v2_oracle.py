"""PyTorch as the oracle for the layers of contract v2: batch norm, activation layers, residual
blocks (both shortcut kinds) and dropout, in float64, over random configurations.

Batch norm and residual blocks are compared value for value (outputs, every gradient, running
statistics over several steps, inference). Dropout cannot share torch's random numbers, so it is
compared by its law: the zeroed fraction over many draws, the survivors' scale 1 / (1 - rate),
the identity at inference, and the gradient flowing only through the survivors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fran
from fran.layers import activation, batchnorm, dropout, residual
from fran.tree import freeze

torch.set_num_threads(1)
RTOL = 1e-9
SOME = settings(max_examples=40, deadline=None)
TORCH_ACT = {
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}


def close(actual, expected, what, rtol=RTOL):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=10 * rtol * scale, err_msg=what)


def t(a, grad=True):
    return torch.tensor(np.array(a), dtype=torch.float64, requires_grad=grad)


def ro(a):
    return freeze(np.array(a, dtype=np.float64))


# ---------------------------------------------------------------- batch norm


def bn_case(rng, image: bool, n: int):
    C = int(rng.integers(1, 5))
    shape = (C, int(rng.integers(1, 5)), int(rng.integers(1, 5))) if image else (C,)
    x = ro(rng.normal(1.0, 2.0, (n, *shape)))
    params = freeze({"gamma": rng.normal(1, 0.5, C), "beta": rng.normal(0, 0.5, C)})
    state = freeze({"mean": rng.normal(0, 1, C), "var": rng.uniform(0.5, 2, C)})
    return shape, x, params, state


@SOME
@given(
    seed=st.integers(0, 2**32 - 1),
    image=st.booleans(),
    n=st.integers(2, 6),
    momentum=st.sampled_from([0.0, 0.1, 0.3, 1.0]),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
    training=st.booleans(),
)
def test_batchnorm_one_step(seed, image, n, momentum, eps, training):
    rng = np.random.default_rng(seed)
    shape, x, params, state = bn_case(rng, image, n)
    spec = batchnorm(momentum=momentum, eps=eps)
    y, pullback, new = fran.vjp_with_state(spec, params, x, state=state, training=training)
    gy = rng.normal(size=y.shape)
    (gp, gx) = pullback(gy)

    xt, gt, bt = t(x), t(params["gamma"]), t(params["beta"])
    rm, rv = t(state["mean"], False), t(state["var"], False)
    yt = F.batch_norm(xt, rm, rv, gt, bt, training=training, momentum=momentum, eps=eps)
    dx, dg, db = torch.autograd.grad((yt * torch.tensor(gy)).sum(), (xt, gt, bt))
    what = f"{spec!r} {'training' if training else 'inference'} on {x.shape}"
    close(y, yt, f"{what} y")
    close(gx, dx, f"{what} dx", 1e-8)
    close(gp["gamma"], dg, f"{what} dgamma", 1e-8)
    close(gp["beta"], db, f"{what} dbeta")
    close(new["mean"], rm, f"{what} running mean")
    close(new["var"], rv, f"{what} running var")


@pytest.mark.parametrize("image", [True, False])
def test_batchnorm_running_statistics_over_steps_then_inference(image):
    rng = np.random.default_rng(3)
    shape, _, params, _ = bn_case(rng, image, 2)
    spec = batchnorm()
    module = (torch.nn.BatchNorm2d if image else torch.nn.BatchNorm1d)(shape[0]).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["gamma"]))
        module.bias.copy_(torch.tensor(params["beta"]))
    state = fran.init_state(spec, shape, np.float64)  # mean 0, var 1, as torch's
    close(state["mean"], module.running_mean, "initial mean")
    close(state["var"], module.running_var, "initial var")
    module.train()
    for step in range(6):
        x = ro(rng.normal(step, 1 + step, (int(rng.integers(2, 7)), *shape)))
        y, state = fran.apply_with_state(spec, params, x, state=state, training=True)
        close(y, module(t(x, False)), f"step {step} y")
        close(state["mean"], module.running_mean, f"step {step} running mean")
        close(state["var"], module.running_var, f"step {step} running var")
    module.eval()
    x = ro(rng.normal(size=(3, *shape)))
    xt = t(x)
    yt = module(xt)
    y, pullback = fran.vjp(spec, params, x, state=state)
    gy = rng.normal(size=y.shape)
    close(y, yt, "inference y")
    close(
        pullback(gy)[1], torch.autograd.grad((yt * torch.tensor(gy)).sum(), xt)[0], "inference dx"
    )


def test_batchnorm_defaults_are_torchs():
    m = torch.nn.BatchNorm2d(3)
    assert (batchnorm().momentum, batchnorm().eps) == (m.momentum, m.eps)
    p = fran.init(batchnorm(), (3, 2, 2), dtype=np.float64)
    close(p["gamma"], m.weight, "gamma")
    close(p["beta"], m.bias, "beta")


# ---------------------------------------------------------------- activation layers


@pytest.mark.parametrize("name", sorted(TORCH_ACT))
def test_activation_layer(name):
    rng = np.random.default_rng(0)
    x = ro(rng.normal(size=(4, 3, 5)) * 3)
    y, pullback = fran.vjp(activation(name), {}, x)
    xt = t(x)
    yt = TORCH_ACT[name](xt)
    gy = rng.normal(size=y.shape)
    close(y, yt, f"{name} y")
    close(pullback(gy)[1], torch.autograd.grad((yt * torch.tensor(gy)).sum(), xt)[0], f"{name} dx")


# ---------------------------------------------------------------- residual blocks


def torch_seq(layers, params, state, x, training):
    """A fran layer sequence of conv2d / dense / batchnorm / activation, in torch functional ops."""
    tensors = []
    for spec, p, s in zip(layers, params, state, strict=True):
        if isinstance(spec, fran.conv2d):
            w, b = t(p["w"]), t(p["b"])
            x = TORCH_ACT[spec.activation](F.conv2d(x, w, b, spec.stride, spec.padding))
            tensors += [("w", w), ("b", b)]
        elif isinstance(spec, fran.dense):
            w, b = t(p["w"]), t(p["b"])
            x = TORCH_ACT[spec.activation](x @ w + b)
            tensors += [("w", w), ("b", b)]
        elif isinstance(spec, batchnorm):
            g, b = t(p["gamma"]), t(p["beta"])
            s["mean_t"], s["var_t"] = t(s["mean"], False), t(s["var"], False)
            x = F.batch_norm(x, s["mean_t"], s["var_t"], g, b, training, spec.momentum, spec.eps)
            tensors += [("gamma", g), ("beta", b)]
        else:
            assert isinstance(spec, activation)
            x = TORCH_ACT[spec.name](x)
    return x, tensors


@SOME
@given(
    seed=st.integers(0, 2**32 - 1),
    projection=st.booleans(),
    act=st.sampled_from(sorted(TORCH_ACT)),
    training=st.booleans(),
)
def test_residual_block(seed, projection, act, training):
    rng = np.random.default_rng(seed)
    C, H = int(rng.integers(1, 4)), int(rng.integers(3, 7))
    if projection:  # a stride-2 block whose shortcut projects, as in every ResNet
        out = int(rng.integers(1, 5))
        f = [fran.conv2d(k=3, channels=out, stride=2, padding=1), batchnorm(), activation(act)]
        g = [fran.conv2d(k=1, channels=out, stride=2), batchnorm()]
    else:
        f = [fran.conv2d(k=3, channels=C, padding=1, activation=act), batchnorm()]
        g = None
    spec = residual(f, shortcut=g)
    shape = (C, H, H)
    params = fran.init(spec, shape, rng=seed, dtype=np.float64)
    state = fran.init_state(spec, shape, np.float64)
    state = freeze(
        {
            k: tuple({n: a + rng.uniform(0, 0.5, a.shape) for n, a in s.items()} for s in v)
            for k, v in state.items()
        }
    )
    x = ro(rng.normal(size=(3, *shape)))
    y, pullback, new = fran.vjp_with_state(spec, params, x, state=state, training=training)
    gy = rng.normal(size=y.shape)
    gp, gx = pullback(gy)

    xt = t(x)
    sf = [dict(s) for s in state["f"]]
    yf, tf = torch_seq(f, params["f"], sf, xt, training)
    if g is None:
        yt, tg, sg = yf + xt, [], []
    else:
        sg = [dict(s) for s in state["g"]]
        yg, tg = torch_seq(g, params["g"], sg, xt, training)
        yt = yf + yg
    grads = torch.autograd.grad((yt * torch.tensor(gy)).sum(), [xt] + [v for _, v in tf + tg])
    close(y, yt, f"{spec!r} y")
    close(gx, grads[0], f"{spec!r} dx", 1e-8)
    ours = [a for p in gp["f"] for a in p.values()] + [
        a for p in gp.get("g", ()) for a in p.values()
    ]
    assert len(ours) == len(grads) - 1
    for i, (a, b) in enumerate(zip(ours, grads[1:], strict=True)):
        close(a, b, f"{spec!r} param gradient {i}", 1e-8)
    for branch, torch_state in (("f", sf), ("g", sg)):
        for s_new, s_t in zip(new.get(branch, ()), torch_state, strict=True):
            if "mean_t" in s_t:
                close(s_new["mean"], s_t["mean_t"], f"{spec!r} running mean")
                close(s_new["var"], s_t["var_t"], f"{spec!r} running var")


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.8])
def test_dropout_law_matches_torch(rate):
    n = 200_000
    x = ro(np.random.default_rng(0).uniform(1, 2, (n // 100, 100)))
    y, pullback = fran.vjp(dropout(rate), {}, x, key=(1, 2), training=True)
    yt = torch.nn.Dropout(rate)(torch.tensor(np.array(x)))
    zero, zero_t = float(np.mean(y == 0)), float((yt == 0).double().mean())
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(zero - rate) <= 5 * sd + 1e-12 and abs(zero_t - rate) <= 5 * sd + 1e-12
    kept = y != 0
    np.testing.assert_allclose(y[kept] / x[kept], 1 / (1 - rate), rtol=1e-12)
    kept_t = (yt != 0).numpy()
    np.testing.assert_allclose((yt.numpy()[kept_t] / x[kept_t]), 1 / (1 - rate), rtol=1e-12)
    gy = np.random.default_rng(1).normal(size=x.shape)
    _, gx = pullback(gy)
    np.testing.assert_array_equal(gx[~kept], 0)  # the gradient flows only through the survivors
    np.testing.assert_allclose(gx[kept], gy[kept] / (1 - rate), rtol=1e-12)
    # inference: the identity, as torch's eval mode
    assert np.array_equal(fran.apply(dropout(rate), {}, x), x)
    module = torch.nn.Dropout(rate).eval()
    assert np.array_equal(module(torch.tensor(np.array(x))).numpy(), x)
