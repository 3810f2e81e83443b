"""PyTorch as a test-only oracle: fran's forward and backward against torch autograd, in float64.

Every built-in layer is checked over random configurations drawn by hypothesis: the output of
`fran.vjp` (and `fran.apply`) against the torch functional op, and the pullback of a random
cotangent gy against `torch.autograd.grad((y * gy).sum(), ...)` for the input and every param.
Then the losses, the optimizers (step by step against torch.optim) and two whole networks (the
seed's LeNet5 and the conv autoencoder) copied into equivalent torch modules.

torch is imported here only; fran itself never imports it. Arrays come from a numpy Generator
seeded by a hypothesis draw, so a failure prints a config that reproduces it exactly.
"""

from __future__ import annotations

import math
import subprocess
import sys
from unittest import mock

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st

import fran
from fran.layers import ACTIVATIONS, _winograd
from fran.losses import cross_entropy, mse
from fran.tree import freeze, tree_items, tree_map

torch.set_num_threads(1)

RTOL = 1e-9
RTOL32 = 1e-4  # float32 results against float64 torch on the same float32-rounded values

TORCH_ACTIVATIONS = {
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}
ACTS = sorted(TORCH_ACTIVATIONS)

# The optimizer tests (5 steps each) draw fewer examples than the profile's max_examples.
SOME = settings(max_examples=min(settings.default.max_examples, 100), deadline=None)
ALL = settings(deadline=None)

seeds = st.integers(0, 2**32 - 1)
activations = st.sampled_from(ACTS)


# ---------------------------------------------------------------- helpers


def assert_close(actual, expected, what: str, rtol: float = RTOL, dtype=np.float64) -> None:
    """`dtype` agreement; atol only absorbs cancellation in entries far below the largest one."""
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=10 * rtol * scale, err_msg=what)


def read_only(a: np.ndarray, dtype=np.float64) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


def leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.array(a, dtype=np.float64), dtype=torch.float64, requires_grad=True)


def random_params(spec, shape: tuple, rng: np.random.Generator) -> dict:
    """float64 params in torch's own layouts (random biases too), independent of fran.init."""
    out = {}
    for name, t in torch_params(torch_module(spec, shape)).items():
        fan_in = math.prod(t.shape[1:])  # torch's own fan-in convention, for a sane scale only
        scale = 0.5 if name == "b" else fan_in**-0.5
        out[name] = read_only(rng.normal(0.0, scale, fran_layout(spec, name, t).shape))
    return out


def check_layer(spec, params: dict, x: np.ndarray, torch_fn, rng, rtol: float = RTOL) -> None:
    """fran's apply, vjp output and pullback(gy) against torch_fn(x, params) and autograd:
    in float64, then again in float32 (as training runs) at a float32 tolerance."""
    gy = None
    for dtype, tol in ((np.float64, rtol), (np.float32, max(rtol, RTOL32))):
        x_d = read_only(x, dtype)
        params_d = {name: read_only(a, dtype) for name, a in params.items()}
        y, pullback = fran.vjp(spec, params_d, x_d)
        if gy is None:
            gy = rng.normal(size=y.shape)
        gy_d = read_only(gy, dtype)
        gparams, gx = pullback(gy_d)
        what = f"{spec!r} {np.dtype(dtype)}"

        # torch in float64 on exactly the values fran saw (rounded to float32 in the second pass)
        xt = leaf(x_d)
        pt = {name: leaf(a) for name, a in params_d.items()}
        yt = torch_fn(xt, pt)
        assert_close(y, yt, f"{what} forward", tol, dtype)
        assert_close(fran.apply(spec, params_d, x_d), yt, f"{what} apply", tol, dtype)

        names = sorted(pt)
        grads = torch.autograd.grad(
            (yt * torch.tensor(np.array(gy_d, np.float64))).sum(), [xt, *(pt[n] for n in names)]
        )
        assert_close(gx, grads[0], f"{what} d/dx", tol, dtype)
        assert sorted(gparams) == names, f"{what}: gradient keys {sorted(gparams)} != {names}"
        for name, g in zip(names, grads[1:], strict=True):
            assert_close(gparams[name], g, f"{what} d/d{name}", tol, dtype)


ORACLE_LAYERS = {"dense", "conv2d", "conv2d_transpose", "maxpooling", "flatten", "softmax"}
ORACLE_LAYERS |= {"activation", "batchnorm", "dropout", "residual"}  # test_layers_v2_oracle.py
ORACLE_LAYERS |= {  # test_sequence_oracle.py
    "attention", "embedding", "layernorm", "lstm", "position_embedding", "rnn",
}  # fmt: skip


def test_every_builtin_layer_and_activation_has_an_oracle():
    registered = set(fran.registry.names())
    builtins = {n for n in fran.layers.__all__ if n in registered}
    assert builtins == ORACLE_LAYERS, (
        f"built-in layers without a torch oracle: {builtins - ORACLE_LAYERS}"
    )
    assert set(ACTS) <= set(ACTIVATIONS)


def test_fran_does_not_import_torch():
    """Importing every fran module leaves torch unimported: torch is a test-only oracle."""
    code = (
        "import importlib, pkgutil, sys, fran\n"
        "for m in pkgutil.walk_packages(fran.__path__, 'fran.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"fran imported torch: {run.stdout}"


# ---------------------------------------------------------------- dense


@ALL
@given(st.data())
def test_dense(data):
    n = data.draw(st.integers(1, 5), label="N")
    n_in = data.draw(st.integers(1, 9), label="n_in")
    spec = fran.dense(
        data.draw(st.integers(1, 9), label="n_out"),
        activation=data.draw(activations, label="activation"),
    )
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    params = random_params(spec, (n_in,), rng)
    act = TORCH_ACTIVATIONS[spec.activation]
    check_layer(
        spec, params, rng.normal(size=(n, n_in)), lambda x, p: act(x @ p["w"] + p["b"]), rng
    )


# ---------------------------------------------------------------- conv2d


def check_conv2d(spec: fran.conv2d, n: int, c_in: int, h: int, w: int, rng) -> None:
    params = random_params(spec, (c_in, h, w), rng)
    act = TORCH_ACTIVATIONS[spec.activation]

    def torch_conv(x, p):
        return act(F.conv2d(x, p["w"], p["b"], stride=spec.stride, padding=spec.padding))

    check_layer(spec, params, rng.normal(size=(n, c_in, h, w)), torch_conv, rng)


@ALL
@given(st.data())
def test_conv2d(data):
    k = data.draw(st.integers(1, 5), label="k")
    stride = data.draw(st.integers(1, 3), label="stride")
    padding = data.draw(st.integers(0, 2), label="padding")
    spec = fran.conv2d(
        k,
        data.draw(st.integers(1, 5), label="channels"),
        stride=stride,
        padding=padding,
        activation=data.draw(activations, label="activation"),
    )
    lo = max(1, k - 2 * padding)
    h = data.draw(st.integers(lo, lo + 8), label="H")
    square = data.draw(st.booleans(), label="square")
    event("square input" if square else "non-square input")
    w = h if square else data.draw(st.integers(lo, lo + 8).filter(lambda v: v != h), label="W")
    n = data.draw(st.integers(1, 3), label="N")
    c_in = data.draw(st.integers(1, 4), label="C_in")
    check_conv2d(spec, n, c_in, h, w, np.random.default_rng(data.draw(seeds, label="seed")))


# (H + 2p - k) is not a multiple of the stride in H, W or both: the last rows/cols are dropped.
RAGGED_CONV = [
    # k, stride, padding, H, W
    (3, 2, 0, 8, 11),
    (3, 2, 1, 6, 9),
    (4, 3, 1, 9, 7),
    (2, 3, 2, 5, 10),
    (5, 3, 0, 12, 9),
    (1, 3, 0, 7, 5),
    (5, 2, 2, 6, 8),
]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize(("k", "stride", "padding", "h", "w"), RAGGED_CONV)
def test_conv2d_ragged(k, stride, padding, h, w, activation):
    assert (h + 2 * padding - k) % stride or (w + 2 * padding - k) % stride
    spec = fran.conv2d(k, 3, stride=stride, padding=padding, activation=activation)
    check_conv2d(spec, 2, 2, h, w, np.random.default_rng([k, stride, padding, h, w]))


# Stride 1 with fewer output than input channels takes the output-side path (no im2col).
OUTPUT_SIDE_CONV = [
    # k, out channels, in channels, padding, H, W
    (3, 1, 16, 1, 9, 7),
    (3, 8, 16, 1, 7, 7),
    (1, 2, 3, 2, 4, 5),
    (4, 2, 5, 0, 6, 9),
    (2, 1, 2, 3, 3, 2),
    (5, 3, 4, 2, 5, 5),
]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize(("k", "out", "inp", "padding", "h", "w"), OUTPUT_SIDE_CONV)
def test_conv2d_output_side(k, out, inp, padding, h, w, activation):
    spec = fran.conv2d(k, out, padding=padding, activation=activation)
    check_conv2d(spec, 3, inp, h, w, np.random.default_rng([k, out, inp, padding, h, w]))


# 3x3 stride 1 with at least _winograd.MIN_CHANNELS channels, O >= C and enough outputs: fran's
# Winograd F(2x2, 3x3) path (odd and even output sizes, padding 0 to 2, several blocks of tiles).
WINOGRAD_CONV = [
    # out channels, in channels, padding, H, W
    (32, 32, 0, 10, 10),
    (33, 32, 1, 11, 12),
    (40, 33, 2, 6, 9),
    (64, 32, 0, 13, 10),
    (32, 32, 0, 23, 23),
]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize(("out", "inp", "padding", "h", "w"), WINOGRAD_CONV)
def test_conv2d_winograd(out, inp, padding, h, w, activation):
    spec = fran.conv2d(3, out, padding=padding, activation=activation)
    spy = mock.patch.object(_winograd, "correlate_vjp", wraps=_winograd.correlate_vjp)
    with mock.patch.object(_winograd, "TILES", 64), spy as vjp:
        check_conv2d(spec, 3, inp, h, w, np.random.default_rng([out, inp, padding, h, w]))
    assert vjp.call_count == 2  # the float64 pass and the float32 pass both took Winograd


# ---------------------------------------------------------------- conv2d_transpose


@ALL
@given(st.data())
def test_conv2d_transpose(data):
    k = data.draw(st.integers(1, 4), label="k")
    stride = data.draw(st.one_of(st.integers(1, 3), st.integers(4, 6)), label="stride")
    padding = data.draw(st.one_of(st.integers(0, k - 1), st.integers(k, k + 2)), label="padding")
    event("stride >= 4" if stride >= 4 else "stride < 4")
    event("padding >= k" if padding >= k else "padding < k")
    spec = fran.conv2d_transpose(
        k,
        data.draw(st.integers(1, 4), label="channels"),
        stride=stride,
        padding=padding,
        activation=data.draw(activations, label="activation"),
    )
    lo = 1
    while (lo - 1) * stride - 2 * padding + k < 1:  # smallest input with a positive output
        lo += 1
    h = data.draw(st.integers(lo, lo + 5), label="H")
    w = data.draw(st.integers(lo, lo + 5), label="W")
    n = data.draw(st.integers(1, 3), label="N")
    c_in = data.draw(st.integers(1, 4), label="C_in")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    params = random_params(spec, (c_in, h, w), rng)
    assert params["w"].shape == (c_in, spec.channels, k, k)  # torch's (C_in, C_out, k, k)
    act = TORCH_ACTIVATIONS[spec.activation]

    def torch_convt(x, p):
        return act(F.conv_transpose2d(x, p["w"], p["b"], stride=stride, padding=padding))

    check_layer(spec, params, rng.normal(size=(n, c_in, h, w)), torch_convt, rng)


@pytest.mark.parametrize(("k", "stride"), [(1, 2), (1, 3), (2, 3)])
def test_conv2d_transpose_stride_above_kernel(k, stride):
    """stride > k leaves zero-filled gaps (only the bias) between the scattered patches."""
    spec = fran.conv2d_transpose(k, 2, stride=stride, activation="tanh")
    rng = np.random.default_rng([k, stride])
    params = random_params(spec, (3, 4, 5), rng)

    def torch_convt(x, p):
        return torch.tanh(F.conv_transpose2d(x, p["w"], p["b"], stride=stride))

    check_layer(spec, params, rng.normal(size=(2, 3, 4, 5)), torch_convt, rng)


# ---------------------------------------------------------------- maxpooling


def torch_pool(spec: fran.maxpooling):
    return lambda x, p: F.max_pool2d(x, kernel_size=spec.k, stride=spec.s)


@ALL
@given(st.data())
def test_maxpooling(data):
    """Distinct random floats (no ties): overlapping (s < k), ragged (floor) and s > k windows."""
    k = data.draw(st.integers(1, 4), label="k")
    overlapping = st.integers(1, k - 1) if k > 1 else st.just(1)
    stride = data.draw(st.one_of(st.none(), overlapping, st.integers(1, 4)), label="stride")
    event("overlapping windows" if (stride or k) < k else "disjoint windows")
    spec = fran.maxpooling(k, stride)
    h = data.draw(st.integers(k, k + 8), label="H")
    w = data.draw(st.integers(k, k + 8), label="W")
    n = data.draw(st.integers(1, 3), label="N")
    c = data.draw(st.integers(1, 3), label="C")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    check_layer(spec, {}, rng.normal(size=(n, c, h, w)), torch_pool(spec), rng)


def tied_inputs(kind: str, shape: tuple, rng) -> np.ndarray:
    if kind == "constant":  # every window is all-equal
        return np.full(shape, 0.5)
    if kind == "relu_zeros":  # a relu's output: most windows hold several exact zeros
        return np.maximum(rng.normal(size=shape) - 1.0, 0.0)
    if kind == "few_levels":  # ties at every level, not only at the bottom
        return rng.integers(0, 3, size=shape).astype(np.float64)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["constant", "relu_zeros", "few_levels"])
@pytest.mark.parametrize(("k", "stride"), [(2, None), (3, 1), (3, 2), (2, 3), (4, 3), (3, None)])
def test_maxpooling_ties_go_to_the_first_max(kind, k, stride):
    """With ties, torch and fran must route the gradient to the same (first, row-major) element."""
    spec = fran.maxpooling(k, stride)
    rng = np.random.default_rng([k, stride or 0, len(kind)])
    x = tied_inputs(kind, (2, 3, 9, 11), rng)
    check_layer(spec, {}, x, torch_pool(spec), rng)


# ---------------------------------------------------------------- flatten and softmax


@ALL
@given(st.data())
def test_flatten(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=4), label="shape"))
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    check_layer(fran.flatten(), {}, rng.normal(size=shape), lambda x, p: torch.flatten(x, 1), rng)


@ALL
@given(st.data())
def test_softmax(data):
    """Ordinary and huge (±1000) logits, over 2-D and 3-D inputs: no NaN, same as torch."""
    shape = tuple(data.draw(st.lists(st.integers(1, 7), min_size=2, max_size=3), label="shape"))
    scale = data.draw(st.sampled_from([1.0, 10.0, 1000.0]), label="scale")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = scale * rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.0, size=shape)
    y, pullback = fran.vjp(fran.softmax(), {}, read_only(x))
    assert np.isfinite(y).all() and np.isfinite(pullback(np.ones(y.shape))[1]).all()
    check_layer(fran.softmax(), {}, x, lambda x, p: torch.softmax(x, dim=-1), rng)


def test_softmax_extreme_logits():
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]])
    check_layer(
        fran.softmax(), {}, x, lambda x, p: torch.softmax(x, dim=-1), np.random.default_rng(0)
    )


# ---------------------------------------------------------------- losses


def check_loss(loss, y: np.ndarray, target: np.ndarray, torch_loss) -> None:
    y = read_only(y)
    target = np.array(target)
    target.flags.writeable = False
    value, grad = loss.fn(y, target)
    yt = leaf(y)
    tt = torch.tensor(np.array(target))
    vt = torch_loss(yt, tt)
    (gt,) = torch.autograd.grad(vt, [yt])
    assert isinstance(value, float)
    assert math.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx(vt.item(), rel=RTOL, abs=RTOL)
    assert_close(grad, gt, f"{loss.name} gradient")


def draw_logits(data, rng):
    n = data.draw(st.integers(1, 8), label="N")
    n_classes = data.draw(st.integers(1, 10), label="K")
    scale = data.draw(st.sampled_from([1.0, 5.0, 1000.0]), label="scale")
    return scale * rng.normal(size=(n, n_classes))


@ALL
@given(st.data())
def test_cross_entropy_int_labels(data):
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    logits = draw_logits(data, rng)
    n, k = logits.shape
    labels = rng.integers(0, k, size=n)
    check_loss(cross_entropy, logits, labels, F.cross_entropy)


@ALL
@given(st.data())
def test_cross_entropy_probability_targets(data):
    """One-hot rows, soft (Dirichlet) rows and unnormalised non-negative rows, as torch allows."""
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    logits = draw_logits(data, rng)
    n, k = logits.shape
    kind = data.draw(st.sampled_from(["one_hot", "soft", "unnormalised"]), label="target")
    if kind == "one_hot":
        target = np.eye(k)[rng.integers(0, k, size=n)]
    elif kind == "soft":
        target = rng.dirichlet(np.ones(k), size=n)
    else:
        target = rng.uniform(0.0, 2.0, size=(n, k))
    check_loss(cross_entropy, logits, target, F.cross_entropy)


@ALL
@given(st.data())
def test_mse(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4), label="shape"))
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    check_loss(mse, rng.normal(size=shape), rng.normal(size=shape), F.mse_loss)


# ---------------------------------------------------------------- optimizers

PARAM_SHAPES = ({"w": (3, 4), "b": (4,)}, {}, {"w": (2, 3, 2, 2), "b": (2,)})
N_STEPS = 5


def check_optimizer(optimizer, make_torch_opt, rng) -> None:
    """N_STEPS updates from the same params and gradient sequence; params compared after each."""
    params = freeze(tuple({k: rng.normal(size=s) for k, s in d.items()} for d in PARAM_SHAPES))
    tensors = {path: leaf(a) for path, a in tree_items(params)}
    opt_t = make_torch_opt(list(tensors.values()))
    state = optimizer.init(params)
    for step in range(N_STEPS):
        # Mixed magnitudes, including near-zero gradients where Adam's eps matters.
        grads = tree_map(lambda a: rng.normal(size=a.shape) * rng.choice([1e-6, 1e-2, 1.0]), params)
        updates, state = optimizer.update(freeze(grads), state, params)
        params = fran.apply_updates(params, updates)
        for path, g in tree_items(grads):
            tensors[path].grad = torch.tensor(g)
        opt_t.step()
        for path, a in tree_items(params):
            assert_close(a, tensors[path], f"{optimizer.name} step {step + 1} {path}")


@SOME
@given(seed=seeds)
def test_adam_default(seed):
    check_optimizer(
        fran.adam(), lambda ps: torch.optim.Adam(ps, lr=1e-3), np.random.default_rng(seed)
    )


@SOME
@given(
    lr=st.floats(1e-4, 0.5),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-10, 1e-2),
    seed=seeds,
)
def test_adam_hyperparameters(lr, b1, b2, eps, seed):
    def make(ps):
        return torch.optim.Adam(ps, lr=lr, betas=(b1, b2), eps=eps)

    check_optimizer(fran.adam(lr, b1=b1, b2=b2, eps=eps), make, np.random.default_rng(seed))


@SOME
@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
    seed=seeds,
)
def test_sgd(lr, momentum, seed):
    def make(ps):
        return torch.optim.SGD(ps, lr=lr, momentum=momentum)

    check_optimizer(fran.sgd(lr, momentum=momentum), make, np.random.default_rng(seed))


# ---------------------------------------------------------------- whole networks


def torch_module(spec, shape: tuple) -> torch.nn.Module:
    """The torch module equivalent to one fran layer on per-sample input `shape` (float64)."""
    if isinstance(spec, fran.dense):
        module = torch.nn.Linear(shape[0], spec.n_out)
    elif isinstance(spec, fran.conv2d):
        module = torch.nn.Conv2d(shape[0], spec.channels, spec.k, spec.stride, spec.padding)
    elif isinstance(spec, fran.conv2d_transpose):
        module = torch.nn.ConvTranspose2d(
            shape[0], spec.channels, spec.k, spec.stride, spec.padding
        )
    elif isinstance(spec, fran.maxpooling):
        return torch.nn.MaxPool2d(spec.k, stride=spec.s)
    elif isinstance(spec, fran.flatten):
        return torch.nn.Flatten(1)
    elif isinstance(spec, fran.softmax):
        return torch.nn.Softmax(dim=-1)
    else:
        raise TypeError(spec)
    act = {"identity": torch.nn.Identity, "tanh": torch.nn.Tanh}
    act |= {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
    return torch.nn.Sequential(module, act[spec.activation]()).double()


def torch_params(module: torch.nn.Module) -> dict:
    """{"w": weight, "b": bias} of a weighted layer's module; {} for the others."""
    if not isinstance(module, torch.nn.Sequential):
        return {}
    return {"w": module[0].weight, "b": module[0].bias}


def fran_layout(spec, name: str, t: torch.Tensor) -> np.ndarray:
    """A torch parameter (or its gradient) in fran's layout: Linear weights are transposed."""
    a = t.detach().numpy()
    return a.T if isinstance(spec, fran.dense) and name == "w" else a


def torch_model(layers, params, shape: tuple):
    """(torch Sequential holding copies of fran's params, per-layer {name: torch Parameter})."""
    modules, named = [], []
    for spec, p in zip(layers, params, strict=True):
        module = torch_module(spec, shape)
        tensors = torch_params(module)
        assert sorted(tensors) == sorted(p), (
            f"{spec!r}: params {sorted(p)} vs torch {sorted(tensors)}"
        )
        for name, t in tensors.items():
            a = p[name].T if isinstance(spec, fran.dense) and name == "w" else p[name]
            assert t.shape == a.shape, f"{spec!r} {name}: fran {a.shape} vs torch {tuple(t.shape)}"
            with torch.no_grad():
                t.copy_(torch.tensor(np.array(a)))
        modules.append(module)
        named.append(tensors)
        shape = fran.output_shape(spec, shape)
    return torch.nn.Sequential(*modules), named


def network_params(layers, shape: tuple, rng) -> tuple:
    params = []
    for spec in layers:
        params.append(random_params(spec, shape, rng))
        shape = fran.output_shape(spec, shape)
    return tuple(params)


def random_biases(params: tuple, rng) -> tuple:
    return freeze(
        tuple({**p, "b": rng.normal(0.0, 0.3, p["b"].shape)} if p else {} for p in params)
    )


LENET5 = fran.network(
    [
        fran.conv2d(k=5, channels=6, activation="tanh"),
        fran.maxpooling(k=2),
        fran.conv2d(k=3, channels=16, activation="tanh"),
        fran.maxpooling(k=2),
        fran.flatten(),
        fran.dense(120, activation="tanh"),
        fran.dense(84, activation="tanh"),
        fran.dense(10, activation="tanh"),
        fran.softmax(),
    ],
    0,
    0,
)

AUTOENCODER = fran.network(
    [
        fran.conv2d(3, 16, padding=1, activation="relu"),
        fran.maxpooling(2),
        fran.conv2d(3, 8, padding=1, activation="relu"),
        fran.maxpooling(2),
        fran.conv2d_transpose(2, 8, stride=2, activation="relu"),
        fran.conv2d_transpose(2, 16, stride=2, activation="relu"),
        fran.conv2d(3, 1, padding=1, activation="sigmoid"),
    ]
)


def lenet5_case(seed: int, n: int = 4):
    rng = np.random.default_rng(seed)
    model = fran.init_weights(LENET5, 28, 28, seed=seed, dtype=np.float64)
    model = attrs.evolve(model, params=random_biases(model.params, rng))
    x = rng.uniform(0.0, 1.0, size=(n, 1, 28, 28))
    labels = rng.integers(0, 10, size=n)
    return model, read_only(x), labels


def check_network_grads(layers, grads, named, what: str) -> None:
    for i, (spec, g, tensors) in enumerate(zip(layers, grads, named, strict=True)):
        assert sorted(g) == sorted(tensors), f"{what} layer {i}: keys {sorted(g)}"
        for name, t in tensors.items():
            expected = fran_layout(spec, name, t.grad)
            assert_close(g[name], expected, f"{what} layer {i} ({spec!r}) d/d{name}", 1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lenet5_loss_and_gradients(seed):
    """Fused softmax + cross_entropy on the logits vs CrossEntropyLoss on the pre-softmax output."""
    model, x, labels = lenet5_case(seed)
    layers = model.spec.layers[:-1]
    logits, pullback = fran.vjp(fran.network(layers), model.params[:-1], x)
    value, dlogits = cross_entropy.fn(logits, labels)
    grads, gx = pullback(dlogits)

    net, named = torch_model(layers, model.params[:-1], model.input_shape)
    xt = leaf(x)
    logits_t = net(xt)
    loss_t = torch.nn.CrossEntropyLoss()(logits_t, torch.tensor(labels))
    loss_t.backward()

    assert_close(logits, logits_t, "LeNet5 logits")
    assert value == pytest.approx(loss_t.item(), rel=RTOL)
    assert_close(gx, xt.grad, "LeNet5 d/dx", 1e-8)
    check_network_grads(layers, grads, named, "LeNet5")

    # The full spec, final softmax included, agrees with torch's softmax of the logits.
    assert_close(fran.apply(model.spec, model.params, x), torch.softmax(logits_t, -1), "probs")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_lenet5_train_step_matches_torch_sgd(momentum):
    """fran.train_step with sgd: loss and every updated param as one torch SGD step."""
    model, x, labels = lenet5_case(seed=7, n=5)
    optimizer = fran.sgd(0.1, momentum=momentum)
    model = attrs.evolve(model, opt_state=optimizer.init(model.params))
    layers = model.spec.layers[:-1]
    net, named = torch_model(layers, model.params[:-1], model.input_shape)
    opt_t = torch.optim.SGD(net.parameters(), lr=0.1, momentum=momentum)

    for step in range(2):  # the second step exercises the momentum buffer
        model, value = fran.train_step(optimizer, cross_entropy, model, (x, labels))
        opt_t.zero_grad()
        loss_t = torch.nn.CrossEntropyLoss()(net(torch.tensor(np.array(x))), torch.tensor(labels))
        loss_t.backward()
        opt_t.step()
        assert value == pytest.approx(loss_t.item(), rel=RTOL)
        for i, (spec, p, tensors) in enumerate(zip(layers, model.params[:-1], named, strict=True)):
            for name, t in tensors.items():
                what = f"LeNet5 step {step + 1} layer {i} ({spec!r}) {name}"
                assert_close(p[name], fran_layout(spec, name, t), what, 1e-8)
    assert model.step == 2


def lenet5_steps(model, x, labels, optimizer, torch_opt, steps, dtype=np.float64, rtol=1e-8):
    """`steps` fran.train_step calls against torch steps from the same params, compared after each."""
    model = attrs.evolve(model, opt_state=optimizer.init(model.params))
    layers = model.spec.layers[:-1]
    net, named = torch_model(layers, model.params[:-1], model.input_shape)
    opt_t = torch_opt(net.parameters())
    x_t = torch.tensor(np.array(x, dtype=np.float64))
    for step in range(steps):
        model, value = fran.train_step(optimizer, cross_entropy, model, (x, labels))
        opt_t.zero_grad()
        loss_t = torch.nn.CrossEntropyLoss()(net(x_t), torch.tensor(labels))
        loss_t.backward()
        opt_t.step()
        assert isinstance(value, float) and value == pytest.approx(loss_t.item(), rel=rtol)
        for i, (spec, p, tensors) in enumerate(zip(layers, model.params[:-1], named, strict=True)):
            for name, t in tensors.items():
                what = f"LeNet5 step {step + 1} layer {i} ({spec!r}) {name}"
                assert_close(p[name], fran_layout(spec, name, t), what, rtol, dtype)
    return model


@pytest.mark.parametrize(
    ("threads", "n", "pieces"),
    [(2, 64, [32, 32]), (4, 64, [16, 16, 16, 16]), (3, 50, [16, 17, 17]), (2, 35, [17, 18])],
)
def test_lenet5_threaded_train_step_matches_torch(monkeypatch, threads, n, pieces):
    """A batch split into pieces (equal and unequal) on threads gives torch's whole-batch step."""
    monkeypatch.setenv(fran.parallel.ENV, str(threads))
    monkeypatch.setenv(fran.parallel.PIECES_ENV, str(threads))  # pieces, not threads, cut it
    seen = []
    run = fran.parallel._run

    def spy(fn, parts):
        seen.append([len(x) for x, _ in parts])
        return run(fn, parts)

    monkeypatch.setattr(fran.parallel, "_run", spy)
    model, x, labels = lenet5_case(seed=11, n=n)
    opt = fran.adam(1e-2)
    lenet5_steps(model, x, labels, opt, lambda ps: torch.optim.Adam(ps, lr=1e-2), 2)
    assert seen == [pieces, pieces]


@pytest.mark.parametrize("threads", [1, 2])
def test_lenet5_float32_train_steps_match_torch(monkeypatch, threads):
    """Training runs in float32: two SGD steps at a float32 tolerance, whole and on two threads."""
    monkeypatch.setenv(fran.parallel.ENV, str(threads))
    model, x, labels = lenet5_case(seed=5, n=32)
    model = attrs.evolve(
        model, params=freeze(tree_map(lambda a: a.astype(np.float32), model.params))
    )
    assert model.dtype == np.float32
    opt = fran.sgd(0.1, momentum=0.9)
    lenet5_steps(
        model,
        read_only(x, np.float32),
        labels,
        opt,
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        2,
        np.float32,
        RTOL32,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_conv_autoencoder_gradients_under_mse(seed):
    """The conv autoencoder through the network spec's own vjp, against torch and MSELoss."""
    rng = np.random.default_rng(seed)
    params = network_params(AUTOENCODER.layers, (1, 28, 28), rng)
    x = read_only(rng.uniform(0.0, 1.0, size=(3, 1, 28, 28)))

    y, pullback = fran.vjp(AUTOENCODER, params, x)
    value, dy = mse.fn(y, x)
    grads, gx = pullback(dy)

    net, named = torch_model(AUTOENCODER.layers, params, (1, 28, 28))
    xt = leaf(x)
    yt = net(xt)
    loss_t = torch.nn.MSELoss()(yt, torch.tensor(np.array(x)))
    loss_t.backward()

    assert_close(y, yt, "autoencoder output")
    assert value == pytest.approx(loss_t.item(), rel=RTOL)
    assert_close(gx, xt.grad, "autoencoder d/dx", 1e-8)
    check_network_grads(AUTOENCODER.layers, grads, named, "autoencoder")


# ---------------------------------------------------------------- init layouts


INIT_CASES = [(fran.dense(7, activation=a), (5,)) for a in ACTS] + [
    (fran.conv2d(3, 4, stride=2, padding=1, activation="relu"), (2, 9, 8)),
    (fran.conv2d(5, 6, activation="tanh"), (1, 28, 28)),
    (fran.conv2d_transpose(2, 8, stride=2, activation="relu"), (8, 7, 7)),
    (fran.conv2d_transpose(3, 2, stride=1, padding=1), (3, 5, 6)),
    (fran.conv2d_transpose(1, 3, stride=3, activation="sigmoid"), (2, 4, 4)),
    (fran.maxpooling(2), (3, 8, 8)),
    (fran.flatten(), (3, 4, 4)),
    (fran.softmax(), (10,)),
]


@pytest.mark.parametrize(("spec", "shape"), INIT_CASES, ids=lambda v: repr(v))
def test_init_gives_torch_layouts(spec, shape):
    """fran.init's params have the keys and shapes of torch's module params, in float64."""
    params = fran.init(spec, shape, 0, dtype=np.float64)
    expected = {
        n: fran_layout(spec, n, t).shape for n, t in torch_params(torch_module(spec, shape)).items()
    }
    assert {n: a.shape for n, a in params.items()} == expected
    for name, a in params.items():
        assert a.dtype == np.float64 and np.isfinite(a).all(), f"{spec!r} {name}"
        assert not a.flags.writeable


@pytest.mark.parametrize("net", [LENET5, AUTOENCODER], ids=["lenet5", "autoencoder"])
def test_init_weights_builds_a_torch_compatible_model(net):
    model = fran.init_weights(net, 28, 28, dtype=np.float64)
    torch_model(net.layers, model.params, model.input_shape)  # asserts shapes layer by layer
    assert model.dtype == np.float64
