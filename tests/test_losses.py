"""Losses: cross_entropy on logits (and its fusion with a final softmax), mse."""

from __future__ import annotations

import numpy as np
import pytest

import fran
from fran import cross_entropy, dense, init_weights, mse, network, sgd, softmax, train_step
from fran.tree import tree_leaves


def _logits(n=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return 3 * rng.standard_normal((n, k)), rng.integers(0, k, n)


def _numeric_grad(f, z, eps=1e-6):
    """Central differences, one element at a time (small arrays only)."""
    grad = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = eps
        grad[i] = (f(z + e) - f(z - e)) / (2 * eps)
    return grad


def test_cross_entropy_is_mean_log_sum_exp_minus_the_true_logit():
    z, labels = _logits()
    value, _ = cross_entropy.fn(z, labels)
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    expected = np.mean(lse - z[np.arange(len(z)), labels])
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("onehot", [False, True])
def test_cross_entropy_gradient_equals_finite_differences(onehot):
    z, labels = _logits()
    target = np.eye(4)[labels] if onehot else labels
    _, grad = cross_entropy.fn(z, target)
    numeric = _numeric_grad(lambda v: cross_entropy.fn(v, target)[0], z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_integer_labels_and_one_hot_agree():
    z, labels = _logits(n=7, k=3, seed=1)
    v1, g1 = cross_entropy.fn(z, labels)
    v2, g2 = cross_entropy.fn(z, np.eye(3)[labels])
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-15)


def test_cross_entropy_does_not_touch_its_inputs():
    z, labels = _logits()
    z.flags.writeable = False
    labels.flags.writeable = False
    z0 = z.copy()
    cross_entropy.fn(z, labels)
    assert np.array_equal(z, z0)


def test_saturated_float32_logits_give_finite_loss_and_gradient():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 500.0]], dtype=np.float32)
    labels = np.array([1, 0])  # confidently wrong on both rows
    value, grad = cross_entropy.fn(z, labels)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx((2000 + 2000) / 2, rel=1e-5)
    expected = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]) / 2  # (p - onehot) / N
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert grad.dtype == np.float32


def test_fused_softmax_gives_finite_gradients_where_the_unfused_path_blows_up():
    # logits x @ w reach +-1000: in float32 the softmax of the true class underflows to 0
    net = network([dense(3), softmax()])
    model = init_weights(net, 1, 2)
    w = np.array([[500.0, -500.0, 0.0], [500.0, -500.0, 0.0]], dtype=np.float32)
    model = fran.Model(net, ({"w": w, "b": np.zeros(3, np.float32)}, {}), model.input_shape)
    x = np.array([[1.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    labels = np.array([1, 2])

    # unfused: p = softmax(logits), dL/dp = -onehot / (N p), pushed through softmax's vjp
    p, pullback = fran.vjp(net, model.params, x)
    assert p[0, 1] == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        (g_unfused, _), _ = pullback(-np.eye(3, dtype=np.float32)[labels] / (2 * p))
    assert not np.isfinite(g_unfused["w"]).all()

    # fused: train_step trains the logits with (p - onehot) / N
    new, value = train_step(sgd(1.0), cross_entropy, model, (x, labels))
    assert value == pytest.approx((2000 + 1000) / 2, rel=1e-5)
    grad_w = model.params[0]["w"] - new.params[0]["w"]  # sgd with lr 1: old - new = grad
    expected = x.T @ ((np.eye(3)[[0, 0]] - np.eye(3)[labels]) / 2)
    np.testing.assert_allclose(grad_w, expected, atol=1e-4)
    assert all(np.isfinite(a).all() for a in tree_leaves(new.params))


def test_mse_is_the_mean_over_all_elements():
    rng = np.random.default_rng(2)
    y, t = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    value, grad = mse.fn(y, t)
    assert value == pytest.approx(((y - t) ** 2).sum() / 60, rel=1e-12)  # not / 3 (per sample)
    np.testing.assert_allclose(grad, 2 * (y - t) / 60, rtol=1e-12)
    numeric = _numeric_grad(lambda v: mse.fn(v, t[:1])[0], y[:1])
    np.testing.assert_allclose(numeric, 2 * (y[:1] - t[:1]) / 20, rtol=1e-6, atol=1e-10)


def test_losses_by_name():
    assert fran.losses.get_loss("mse") is mse
    assert fran.losses.get_loss(cross_entropy) is cross_entropy
    with pytest.raises(ValueError, match="cross_entropy"):
        fran.losses.get_loss("hinge")
