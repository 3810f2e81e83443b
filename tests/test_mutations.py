"""Torch-free tests for the bugs a mutation audit planted that the `tests` suite let through.

Four passed every test (a wrong-signed conv2d_transpose update in training, Model.__eq__
ignoring the layers' state, conv2d_transpose's "torch" init with torch's fan-in for conv2d, not
for ConvTranspose2d, predict using batch statistics instead of the running ones) and six were
caught only by the PyTorch oracle (batch norm's unbiased running variance and its momentum,
dropout's scale in training and at inference, a sign flip for a batch norm at the network's top
level). Each is pinned here by values computed by hand or by a reference written from the formula:

- whole training steps against plain gradient descent on central finite differences of the loss
  of fran.apply's forward pass (float64), for networks with conv2d_transpose first and last
  (an autoencoder), batch norm at the top level and inside a residual block;
- conv2d_transpose's forward against the loops of its formula;
- batch norm's running statistics, inference output and predict by hand, dropout's mask values.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import fran
from fran import (
    activation,
    batchnorm,
    conv2d,
    conv2d_transpose,
    dense,
    dropout,
    flatten,
    network,
    residual,
)
from fran.losses import mse
from fran.tree import ravel, tree_leaves, tree_map


def data(shape: tuple, n: int, n_out: tuple, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.uniform(0.1, 0.9, (n, *n_out))


# --------------------------------------------------------------------------- whole steps


def loss_of(model: fran.Model, X, Y):
    """params -> the mse of the training-mode forward pass: what one step of SGD descends."""

    def loss(params):
        out, _ = fran.apply_with_state(model.spec, params, X, state=model.state, training=True)
        return mse.fn(out, Y)[0]

    return loss


def finite_difference_grad(loss, params, h: float = 1e-6):
    """The gradient of loss at params by central differences, element by element."""
    flat, unravel = ravel(params)
    grad = np.empty_like(flat)
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = h
        grad[i] = (loss(unravel(flat + step)) - loss(unravel(flat - step))) / (2 * h)
    return unravel(grad)


def reference_sgd(model: fran.Model, X, Y, lr: float, steps: int):
    """Plain gradient descent on the finite-difference gradient (the running statistics do not
    enter a training-mode loss, so the model's state is left as it is)."""
    params = model.params
    for _ in range(steps):
        grad = finite_difference_grad(loss_of(model, X, Y), params)
        params = tree_map(lambda p, g: p - lr * g, params, grad)
    return params


NETWORKS = {
    # an autoencoder: the transposed convolution is the last layer, its input gradient unused
    "autoencoder": (
        [
            conv2d(k=3, channels=3, stride=2, padding=1, activation="relu"),
            conv2d_transpose(k=2, channels=1, stride=2, activation="sigmoid"),
        ],
        (1, 8, 8),
        (1, 8, 8),
    ),
    # the transposed convolution first: the path without an input gradient
    "transpose-first": (
        [
            conv2d_transpose(k=3, channels=2, stride=2, padding=1, activation="tanh"),
            flatten(),
            dense(3, activation="sigmoid"),
        ],
        (2, 4, 4),
        (3,),
    ),  # fmt: skip
    # batch norm on the network's input (top level) and after a convolution
    "batchnorm-top": (
        [
            batchnorm(),
            conv2d(k=3, channels=2, activation="tanh"),
            batchnorm(),
            flatten(),
            dense(2, activation="sigmoid"),
        ],
        (2, 5, 5),
        (2,),
    ),  # fmt: skip
    # batch norm inside a residual block's branch
    "batchnorm-residual": (
        [
            conv2d(k=3, channels=2, padding=1),
            residual([batchnorm(), activation("relu"), conv2d(k=3, channels=2, padding=1)]),
            flatten(),
            dense(2, activation="sigmoid"),
        ],
        (2, 4, 4),
        (2,),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_training_steps_are_gradient_descent_on_the_loss(name):
    layers, shape, n_out = NETWORKS[name]
    X, Y = data(shape, 12, n_out)
    model = fran.init_weights(network(layers), *shape[1:], shape[0], seed=3, dtype=np.float64)
    lr, steps = 0.5, 3
    want = reference_sgd(model, X, Y, lr, steps)
    trained = model
    for _ in range(steps):  # one step an epoch: the whole batch (its order does not matter)
        trained = fran.train_nn(trained, X, Y, optimizer=fran.sgd(lr), batch_size=len(X))
    assert trained.step == steps
    pairs = zip(tree_leaves(want), tree_leaves(model.params), strict=True)
    moved = max(np.abs(a - b).max() for a, b in pairs)
    assert moved > 1e-3  # the steps changed the params: the comparison below means something
    for a, b in zip(tree_leaves(trained.params), tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- conv2d_transpose


def conv_transpose_by_loops(x, w, b, stride: int, padding: int) -> np.ndarray:
    """z[n,o, s*r+i-p, s*q+j-p] += w[c,o,i,j] x[n,c,r,q], plus b[o]: the docstring's formula."""
    N, C, H, W = x.shape
    _, O, k, _ = w.shape
    full = np.zeros((N, O, (H - 1) * stride + k, (W - 1) * stride + k))
    for n in range(N):
        for c in range(C):
            for o in range(O):
                for r in range(H):
                    for q in range(W):
                        for i in range(k):
                            for j in range(k):
                                full[n, o, stride * r + i, stride * q + j] += (
                                    w[c, o, i, j] * x[n, c, r, q]
                                )
    p = padding
    return full[:, :, p : full.shape[2] - p, p : full.shape[3] - p] + b[None, :, None, None]


@pytest.mark.parametrize("k, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 0), (4, 3, 1)])
def test_conv2d_transpose_forward_is_its_formula(k, stride, padding):
    spec = conv2d_transpose(k=k, channels=3, stride=stride, padding=padding)
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.standard_normal((2, 2, 4, 5))
    params = fran.init(spec, (2, 4, 5), rng, dtype=np.float64)
    params = {"w": params["w"], "b": rng.standard_normal(3)}
    want = conv_transpose_by_loops(x, params["w"], params["b"], stride, padding)
    np.testing.assert_allclose(fran.apply(spec, params, x), want, rtol=1e-12, atol=1e-12)


def test_conv2d_transpose_torch_init_uses_torch_fan_in():
    # torch's ConvTranspose2d weight is (C_in, C_out, k, k) and its fan_in is weight.size(1) * k * k
    # = C_out * k^2: for 16 -> 8, k = 2, the bound 1 / sqrt(32) = 0.177 (C_in * k^2 gives 0.125)
    spec = conv2d_transpose(k=2, channels=8, weight_init="torch")
    params = fran.init(spec, (16, 5, 5), np.random.default_rng(0), dtype=np.float64)
    bound = 1 / np.sqrt(8 * 2 * 2)
    assert params["w"].shape == (16, 8, 2, 2)
    assert np.abs(params["w"]).max() <= bound
    assert np.abs(params["w"]).max() > 0.97 * bound  # 512 uniform draws reach the bound's end
    assert np.abs(params["b"]).max() <= bound and np.abs(params["b"]).max() > 0.5 * bound


# --------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_running_statistics_by_hand(momentum):
    # top level: the batch norm sees X itself, so its statistics are X's, step after step
    X, Y = data((2, 3, 3), 10, (2,))
    net = network([batchnorm(momentum=momentum), flatten(), dense(2)])
    model = fran.init_weights(net, 3, 3, 2, dtype=np.float64)
    mu = X.mean(axis=(0, 2, 3))
    var = X.var(axis=(0, 2, 3), ddof=1)  # unbiased, as torch's running_var: n / (n - 1)
    mean_r, var_r = np.zeros(2), np.ones(2)
    for _ in range(2):
        model = fran.train_nn(model, X, Y, optimizer=fran.sgd(0.1), batch_size=len(X))
        mean_r = (1 - momentum) * mean_r + momentum * mu
        var_r = (1 - momentum) * var_r + momentum * var
        np.testing.assert_allclose(model.state[0]["mean"], mean_r, rtol=1e-12)
        np.testing.assert_allclose(model.state[0]["var"], var_r, rtol=1e-12)


def trained_batchnorm_model():
    X, Y = data((1, 6, 6), 16, (3,))
    net = network([conv2d(k=3, channels=2), batchnorm(), activation("relu"), flatten(), dense(3)])
    model = fran.init_weights(net, 6, 6, 1, seed=1, dtype=np.float64)
    for _ in range(5):
        model = fran.train_nn(model, X + 1.5, Y, optimizer=fran.sgd(0.05), batch_size=8)
    return model


def by_hand(model: fran.Model, X, statistics: str) -> np.ndarray:
    """The network's output with the batch norm written out: running or this batch's statistics."""
    conv, bn, _, _, fc = model.spec.layers
    z = fran.apply(conv, model.params[0], X)
    if statistics == "running":
        mean, var = model.state[1]["mean"], model.state[1]["var"]
    else:
        mean, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    gamma, beta = model.params[1]["gamma"], model.params[1]["beta"]
    shape = (1, -1, 1, 1)
    h = (z - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + bn.eps)
    h = np.maximum(gamma.reshape(shape) * h + beta.reshape(shape), 0).reshape(len(X), -1)
    return h @ model.params[4]["w"] + model.params[4]["b"]


def test_predict_and_evaluate_use_the_running_statistics():
    model = trained_batchnorm_model()
    assert not np.allclose(model.state[1]["mean"], 0)  # trained: the statistics moved
    X, Y = data((1, 6, 6), 40, (3,), seed=7)
    want = by_hand(model, X, "running")
    assert np.abs(want - by_hand(model, X, "batch")).max() > 0.05  # the two differ here
    np.testing.assert_allclose(fran.predict(model, X, batch_size=7), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fran.apply(model.spec, model.params, X, state=model.state), want)
    loss = fran.evaluate_nn(model, X, Y)["loss"]
    assert loss == pytest.approx(np.mean((want - Y) ** 2), rel=1e-10)


def test_training_mode_uses_the_batch_statistics():
    model = trained_batchnorm_model()
    X, _ = data((1, 6, 6), 40, (3,), seed=7)
    got = fran.apply(model.spec, model.params, X, state=model.state, training=True)
    np.testing.assert_allclose(got, by_hand(model, X, "batch"), rtol=1e-10, atol=1e-12)


def test_model_equality_sees_the_layers_state():
    model = trained_batchnorm_model()
    assert model == attrs.evolve(model)
    shifted = tree_map(lambda a: a + 1e-3, model.state)
    assert model != attrs.evolve(model, state=shifted)
    assert model != attrs.evolve(model, params=tree_map(lambda a: a * 1.001, model.params))


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout_scales_the_survivors_and_is_the_identity_at_inference(rate):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, (200, 50))
    spec = dropout(rate)
    y, pullback = fran.vjp(spec, {}, x, key=(4, 2), training=True)
    kept = y != 0
    assert abs(1 - kept.mean() - rate) < 0.02  # 10,000 draws: the dropped fraction is `rate`
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)
    dy = rng.standard_normal(x.shape)
    _, dx = pullback(dy)
    np.testing.assert_allclose(dx[kept], dy[kept] / (1 - rate), rtol=1e-15)
    assert not dx[~kept].any()
    assert np.array_equal(fran.apply(spec, {}, x), x)  # inference: the identity, no scale
    assert np.array_equal(fran.apply(spec, {}, x, key=(4, 2)), x)


def test_predict_through_dropout_is_the_network_without_it():
    X, Y = data((6,), 20, (2,))
    with_dropout = fran.init_weights(network([dense(5), dropout(0.4), dense(2)]), 1, 6, 1)
    model = fran.train_nn(with_dropout, X, Y, optimizer=fran.sgd(0.1), batch_size=5)
    params = (model.params[0], model.params[2])
    plain = fran.apply(network([dense(5), dense(2)]), params, X.astype(np.float32))
    np.testing.assert_allclose(fran.predict(model, X), plain, rtol=1e-6)
