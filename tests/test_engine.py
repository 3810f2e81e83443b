"""The engine and the model value: the seed's snippet, network specs, init_weights, registry dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import strategies
from hypothesis import given

import fran
from fran import (
    conv2d,
    conv2d_transpose,
    dense,
    evaluate_nn,
    flatten,
    init_weights,
    maxpooling,
    network,
    predict,
    softmax,
    summary,
    train_nn,
)
from fran.tree import tree_items, tree_leaves


def _digits(n: int, seed: int = 0, shape=(28, 28)):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def _copy(tree):
    return [(path, np.array(a, copy=True)) for path, a in tree_items(tree)]


def _same(tree, copied) -> bool:
    return all(
        np.array_equal(a, b) for (_, a), (_, b) in zip(tree_items(tree), copied, strict=True)
    )


def _lenet5():
    return network(
        [
            conv2d(k=5, channels=6, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            conv2d(k=3, channels=16, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            flatten(),
            dense(n_out=120, activation="tanh"),
            dense(n_out=84, activation="tanh"),
            dense(n_out=10, activation="tanh"),
            softmax(),
        ],
        0,
        0,
    )


# ---------------------------------------------------------------- the seed's snippet


def test_seed_snippet_builds_and_trains():
    X, y = _digits(32)
    m_in = n_in = 28
    # --- the seed's snippet (LeNet-5, as in examples/lenet5_mnist.py)
    model = network(
        [
            conv2d(k=5, channels=6, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            conv2d(k=3, channels=16, stride=1, activation="tanh"),
            maxpooling(k=2, stride=2),
            flatten(),
            dense(n_out=120, activation="tanh"),
            dense(n_out=84, activation="tanh"),
            dense(n_out=10, activation="tanh"),
            softmax(),
        ],
        0,
        0,
    )
    model = init_weights(model, m_in, n_in)
    model = train_nn(model, X, y)
    # ---
    assert model.input_shape == (1, 28, 28)
    assert (model.epoch, model.step) == (1, 1)  # 32 samples, batch_size 64: one step
    assert all(np.isfinite(a).all() for a in tree_leaves(model.params))
    out = predict(model, X)
    assert out.shape == (32, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_network_takes_layers_with_or_without_counters():
    layers = [flatten(), dense(3)]
    a, b, c = network(layers), network(layers, 0, 0), network(layers, 3, 7)
    assert a == b == c and hash(a) == hash(c)  # counters are bookkeeping, not identity
    assert (b.epoch, b.step) == (0, 0) and (c.epoch, c.step) == (3, 7)
    assert a.layers == (flatten(), dense(3))
    model = init_weights(c, 4, 4)
    assert (model.epoch, model.step) == (3, 7)


# ---------------------------------------------------------------- values, not objects


def test_params_are_read_only():
    model = init_weights(_lenet5(), 28, 28)
    for path, a in tree_items(model.params):
        assert not a.flags.writeable, path
    with pytest.raises(ValueError, match="read-only"):
        model.params[0]["w"][0, 0, 0, 0] = 1.0
    params = fran.init(dense(3), (4,))
    with pytest.raises(ValueError, match="read-only"):
        params["b"] += 1


def test_training_mutates_neither_the_data_nor_the_old_model():
    X, y = _digits(40, shape=(1, 12, 12))
    net = network([conv2d(3, 2, activation="relu"), flatten(), dense(10), softmax()])
    old = init_weights(net, 12, 12)
    X0, y0, p0 = X.copy(), y.copy(), _copy(old.params)
    new = train_nn(old, X, y, batch_size=16)
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    assert _same(old.params, p0)
    assert (old.epoch, old.step, old.opt_state) == (0, 0, None)
    assert not _same(new.params, p0)
    for path, a in tree_items((new.params, new.opt_state)):
        assert not np.asarray(a).flags.writeable or np.ndim(a) == 0, path


# ---------------------------------------------------------------- shape errors at init_weights


def test_dense_first_flattens_the_image():
    model = init_weights(network([dense(10), softmax()]), 28, 28)
    assert model.input_shape == (784,)
    assert model.params[0]["w"].shape == (784, 10)
    X, _ = _digits(3)
    assert predict(model, X).shape == (3, 10)


@pytest.mark.parametrize(
    ("layers", "side", "position", "spec_text", "shape_text"),
    [
        ([conv2d(k=5, channels=2)], 3, "layer 0", "conv2d(k=5", "(1, 3, 3)"),
        ([flatten(), conv2d(k=3, channels=2)], 8, "layer 1", "conv2d(k=3", "(64,)"),
        ([conv2d(k=3, channels=2), maxpooling(k=5)], 6, "layer 1", "maxpooling(k=5", "(2, 4, 4)"),
        ([conv2d(k=3, channels=2), dense(4), dense(2)], 6, "layer 1", "dense(n_out=4", "(2, 4, 4)"),
    ],
)
def test_shape_mismatch_names_layer_spec_and_shape(layers, side, position, spec_text, shape_text):
    with pytest.raises(ValueError) as info:
        init_weights(network(layers), side, side)
    message = str(info.value)
    for part in (position, spec_text, shape_text):
        assert part in message, f"{part!r} missing from: {message}"


@pytest.mark.parametrize("bad", [{"m_in": 0}, {"n_in": -3}, {"channels": 0}, {"m_in": 2.5}])
def test_init_weights_rejects_bad_sizes(bad):
    sizes = {"m_in": 8, "n_in": 8, "channels": 1, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        init_weights(network([flatten(), dense(2)]), **sizes)


# ---------------------------------------------------------------- registry dispatch


def test_dispatch_is_by_exact_type():
    class mydense(dense):
        pass

    sub = mydense(3)
    assert sub == sub and isinstance(sub, dense)
    with pytest.raises(fran.registry.RegistryError, match="mydense"):
        fran.output_shape(sub, (4,))
    with pytest.raises(fran.registry.RegistryError, match="not a registered layer"):
        fran.apply(sub, fran.init(dense(3), (4,)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        network([flatten(), sub])
    assert fran.registry.rules_for(dense(3)).name == "dense"
    assert fran.registry.get("dense") is dense
    assert fran.registry.get("network") is network


def test_unknown_layer_name_lists_the_known_ones():
    with pytest.raises(fran.registry.RegistryError) as info:
        fran.registry.get("no_such_layer")
    for name in ("conv2d", "dense", "maxpooling", "softmax"):
        assert name in str(info.value)


# ---------------------------------------------------------------- the training backward pass


@given(case=strategies.classifier_cases())
def test_training_pullback_gives_the_same_param_gradients(case):
    """pullback(dy, input_grad=False), as train_step uses it, skips only the data's gradient."""
    y, full = fran.vjp(case.spec, case.params, case.x)
    y2, lean = fran.vjp(case.spec, case.params, case.x)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    (g_full, gx), (g_lean, none) = full(dy), lean(dy, input_grad=False)
    assert gx.shape == case.x.shape and none is None
    np.testing.assert_array_equal(y, y2)
    for (path, a), (_, b) in zip(tree_items(g_full), tree_items(g_lean), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=path)


# ---------------------------------------------------------------- summary


def test_summary_lists_every_layer_and_the_total():
    model = init_weights(_lenet5(), 28, 28)
    text = summary(model)
    for layer in model.spec.layers:
        assert repr(layer) in text
    # the seed's LeNet-5 on 28x28: 156 + 880 + 48120 + 10164 + 850
    total = 6 * 25 + 6 + 16 * 6 * 9 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    assert total == sum(a.size for a in tree_leaves(model.params)) == 60170
    assert "60,170" in text
    assert "(6, 24, 24)" in text and "(16, 5, 5)" in text
    assert str(model) == text


# ---------------------------------------------------------------- weight initialisation

FAN_IN, FAN_OUT = 2000, 500  # unequal, so swapping fan-in and fan-out shows
SCHEMES = {
    "glorot_uniform": ((2 / (FAN_IN + FAN_OUT)) ** 0.5, True),
    "xavier_uniform": ((2 / (FAN_IN + FAN_OUT)) ** 0.5, True),
    "glorot_normal": ((2 / (FAN_IN + FAN_OUT)) ** 0.5, False),
    "xavier_normal": ((2 / (FAN_IN + FAN_OUT)) ** 0.5, False),
    "he_uniform": ((2 / FAN_IN) ** 0.5, True),
    "kaiming_uniform": ((2 / FAN_IN) ** 0.5, True),
    "he_normal": ((2 / FAN_IN) ** 0.5, False),
    "kaiming_normal": ((2 / FAN_IN) ** 0.5, False),
    "lecun_uniform": ((1 / FAN_IN) ** 0.5, True),
    "lecun_normal": ((1 / FAN_IN) ** 0.5, False),
    "torch": ((1 / (3 * FAN_IN)) ** 0.5, True),  # U(+-1/sqrt(fan_in))
}


def _check_std(w: np.ndarray, std: float, uniform: bool) -> None:
    assert abs(w.mean()) < 0.02 * std
    np.testing.assert_allclose(w.std(), std, rtol=0.01)
    bound = std * 3**0.5
    if uniform:
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * bound
    else:
        assert np.abs(w).max() > 1.5 * bound  # a normal's tails pass the uniform's bound


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_init_scheme_std(scheme):
    std, uniform = SCHEMES[scheme]
    model = init_weights(network([dense(FAN_OUT)]), 1, FAN_IN, scheme=scheme)
    w = model.params[0]["w"]
    assert w.shape == (FAN_IN, FAN_OUT)
    _check_std(w, std, uniform)
    b = model.params[0]["b"]
    if scheme == "torch":  # PyTorch's default draws the bias like the weights
        assert b.any() and np.abs(b).max() <= FAN_IN**-0.5
    else:
        assert not b.any()


def test_init_scheme_std_for_conv():
    model = init_weights(network([conv2d(k=3, channels=64)]), 8, 8, 32, scheme="he_normal")
    w = model.params[0]["w"]
    assert w.shape == (64, 32, 3, 3)
    _check_std(w, (2 / (32 * 9)) ** 0.5, uniform=False)


def test_default_init_follows_the_activation():
    net = network([dense(FAN_OUT, activation="relu"), dense(FAN_OUT, activation="tanh")])
    model = init_weights(net, 1, FAN_IN)
    _check_std(model.params[0]["w"], (2 / FAN_IN) ** 0.5, uniform=False)  # He normal for relu
    _check_std(model.params[1]["w"], (2 / (2 * FAN_OUT)) ** 0.5, uniform=True)  # Glorot uniform


def test_layer_weight_init_wins_over_the_scheme():
    net = network([dense(FAN_OUT, weight_init="torch"), dense(FAN_OUT)])
    model = init_weights(net, 1, FAN_IN, scheme="lecun_normal")
    _check_std(model.params[0]["w"], (1 / (3 * FAN_IN)) ** 0.5, uniform=True)
    _check_std(model.params[1]["w"], (1 / FAN_OUT) ** 0.5, uniform=False)


def test_the_scheme_reaches_the_layers_inside_a_residual_block():
    """init_weights(scheme=...) sets every layer without a weight_init, those in a residual's
    branches too (they kept fran's default, Glorot and zero biases, before)."""
    block = fran.residual(
        [conv2d(k=3, channels=16, padding=1), fran.batchnorm()],
        shortcut=[conv2d(k=1, channels=16, weight_init="he_normal")],
    )
    model = init_weights(network([block, flatten(), dense(FAN_OUT)]), 8, 8, 8, scheme="torch")
    f, g = model.spec.layers[0].layers, model.spec.layers[0].shortcut
    assert f[0].weight_init == "torch" and g[0].weight_init == "he_normal"
    w, b = model.params[0]["f"][0]["w"], model.params[0]["f"][0]["b"]
    bound = (8 * 9) ** -0.5  # fan_in = C k k
    assert 0.99 * bound < np.abs(w).max() <= bound and 0.9 * bound < np.abs(b).max() <= bound
    assert not model.params[0]["g"][0]["b"].any()  # he_normal: zero biases, as its own says


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        init_weights(network([dense(3)]), 1, 4, scheme="orthogonal")
    for name in ("orthogonal", "glorot_uniform", "he_normal", "lecun_uniform", "torch"):
        assert name in str(info.value)


def test_init_is_reproducible_and_seeded():
    net = _lenet5()
    a, b, c = (
        init_weights(net, 28, 28),
        init_weights(net, 28, 28),
        init_weights(net, 28, 28, seed=1),
    )
    assert _same(a.params, _copy(b.params))
    assert not _same(a.params, _copy(c.params))


# ---------------------------------------------------------------- dtypes


def test_float64_end_to_end():
    X, y = _digits(24, shape=(1, 10, 10))
    net = network(
        [
            conv2d(3, 2, padding=1, activation="tanh"),
            maxpooling(2),
            conv2d_transpose(2, 2, stride=2, activation="relu"),
            flatten(),
            dense(10),
            softmax(),
        ]
    )
    model = init_weights(net, 10, 10, dtype=np.float64)
    assert model.dtype == np.float64
    model = train_nn(model, X, y, batch_size=8)
    for path, a in tree_items(
        (model.params, model.opt_state.inner[1].mu, model.opt_state.inner[1].nu)
    ):
        assert a.dtype == np.float64, path
    assert predict(model, X).dtype == np.float64
    assert np.isfinite(evaluate_nn(model, X, y)["loss"])


def test_float32_by_default():
    X, y = _digits(8, shape=(6, 6))
    model = init_weights(network([flatten(), dense(10), softmax()]), 6, 6)
    assert model.dtype == np.float32
    model = train_nn(model, X.astype(np.float64), y)
    assert all(a.dtype == np.float32 for a in tree_leaves(model.params))
    assert predict(model, X).dtype == np.float32


@pytest.mark.parametrize("use", ["train_nn", "evaluate_nn", "predict"])
def test_using_a_network_before_init_weights_is_a_clear_error(use):
    X, y = _digits(4, shape=(6, 6))
    net = network([flatten(), dense(10), softmax()])
    call = {
        "train_nn": lambda: train_nn(net, X, y),
        "evaluate_nn": lambda: evaluate_nn(net, X, y),
        "predict": lambda: predict(net, X),
    }[use]
    with pytest.raises(ValueError, match="init_weights"):
        call()
