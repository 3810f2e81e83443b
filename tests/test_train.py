"""Training: it learns, it is deterministic, its counters and Adam state carry over, it fails."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from fran import (
    TrainingError,
    adam,
    conv2d,
    dense,
    evaluate_nn,
    flatten,
    init_weights,
    maxpooling,
    network,
    predict,
    sgd,
    softmax,
    train_nn,
)
from fran.train import OptimizerStateWarning
from fran.tree import tree_items, tree_leaves


def _blobs(n=200, seed=0):
    """Two Gaussian blobs in 2-D, centred at (-2, -2) and (2, 2): linearly separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 2)) * 0.7 + np.where(y[:, None] == 1, 2.0, -2.0)
    return X.astype(np.float32), y


def _mlp(n_features=2, seed=0):
    net = network([dense(16, activation="tanh"), dense(2), softmax()])
    return init_weights(net, 1, n_features, seed=seed)


def _stripes(n=96, seed=0):
    """8x8 images with a bright vertical (class 0) or horizontal (class 1) bar, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = 0.1 * rng.random((n, 8, 8))
    pos = rng.integers(1, 7, n)
    for i in range(n):
        if y[i] == 0:
            X[i, :, pos[i]] += 1.0
        else:
            X[i, pos[i], :] += 1.0
    return X.astype(np.float32), y


def _params_equal(a, b) -> bool:
    return all(np.array_equal(x, z) for x, z in zip(tree_leaves(a), tree_leaves(b), strict=True))


# ---------------------------------------------------------------- it learns


def test_mlp_separates_two_blobs():
    X, y = _blobs()
    model = _mlp()
    assert model.input_shape == (2,)  # init_weights(net, 1, n_features) on vectors
    before = evaluate_nn(model, X, y)
    for _ in range(5):
        model = train_nn(model, X, y, optimizer=adam(0.05), batch_size=32)
    after = evaluate_nn(model, X, y)
    assert after["loss"] < 0.3 * before["loss"]
    assert after["accuracy"] >= 0.97
    assert after["n"] == 200


def test_tiny_conv_net_learns_bars():
    X, y = _stripes()
    net = network([conv2d(3, 4, activation="relu"), maxpooling(2), flatten(), dense(2), softmax()])
    model = init_weights(net, 8, 8)
    before = evaluate_nn(model, X, y)
    for _ in range(8):
        model = train_nn(model, X, y, optimizer=adam(0.02), batch_size=16)
    after = evaluate_nn(model, X, y)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] >= 0.9


def test_mlp_on_many_features():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 7))
    y = (X[:, 0] > 0).astype(np.int64)
    model = init_weights(network([dense(4, activation="relu"), dense(2), softmax()]), 1, 7)
    assert model.input_shape == (7,)
    before = evaluate_nn(model, X, y)
    for _ in range(10):
        model = train_nn(model, X, y, optimizer=adam(0.05), batch_size=10)
    after = evaluate_nn(model, X, y)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] >= 0.9
    probs = predict(model, X)
    assert probs.shape == (50, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.epoch == 10 and model.step == 50


def test_float32_training_stays_float32():
    """A float32 model on float32 data: loss a float, every param and optimizer leaf float32."""
    X, y = _stripes(n=40)
    net = network([conv2d(3, 4, activation="tanh"), maxpooling(2), flatten(), dense(2), softmax()])
    model = init_weights(net, 8, 8)
    assert model.dtype == np.float32
    model = train_nn(model, X, y, optimizer=adam(0.01), batch_size=20)
    for path, leaf in tree_items(model.params):
        assert leaf.dtype == np.float32, f"params{path} is {leaf.dtype}"
    for path, leaf in tree_items(model.opt_state):
        if isinstance(leaf, np.ndarray) and leaf.ndim:
            assert leaf.dtype == np.float32, f"opt_state{path} is {leaf.dtype}"
    assert predict(model, X).dtype == np.float32


# ---------------------------------------------------------------- determinism and counters


def test_shuffle_is_deterministic_given_seed_and_epoch():
    X, y = _blobs(100)
    model = _mlp()
    a = train_nn(model, X, y, batch_size=16)
    b = train_nn(model, X, y, batch_size=16)
    assert _params_equal(a.params, b.params)  # bitwise
    other_seed = train_nn(model, X, y, batch_size=16, seed=model.seed + 1)
    assert not _params_equal(a.params, other_seed.params)
    later = attrs.evolve(model, epoch=5)
    assert not _params_equal(a.params, train_nn(later, X, y, batch_size=16).params)


def test_counters_advance():
    X, y = _blobs(130)
    model = _mlp()
    calls = []
    model = train_nn(model, X, y, batch_size=32, on_batch=lambda i, v: calls.append((i, v)))
    assert [i for i, _ in calls] == [0, 1, 2, 3, 4]  # ceil(130 / 32) = 5 steps
    assert all(math.isfinite(v) for _, v in calls)
    assert (model.epoch, model.step) == (1, 5)
    model = train_nn(model, X, y, batch_size=64)
    assert (model.epoch, model.step) == (2, 5 + 3)
    model = train_nn(model, X, y, batch_size=1000)
    assert (model.epoch, model.step) == (3, 9)


def test_adam_state_continues_across_calls():
    X, y = _blobs(100)
    one = train_nn(_mlp(), X, y, batch_size=25)
    assert one.opt_state.inner[1].count == 4  # adam's ScaleByAdamState
    two = train_nn(one, X, y, batch_size=25)
    assert two.opt_state.inner[1].count == 8
    restarted = train_nn(attrs.evolve(one, opt_state=None), X, y, batch_size=25)
    assert restarted.opt_state.inner[1].count == 4
    assert not _params_equal(two.params, restarted.params)


def test_switching_optimizer_starts_a_fresh_state():
    X, y = _blobs(100)
    model = train_nn(_mlp(), X, y, batch_size=25)
    with pytest.warns(OptimizerStateWarning, match=r"scale_by_adam.* sgd\(lr=0.1.* fresh state"):
        model = train_nn(model, X, y, optimizer=sgd(0.1, momentum=0.5), batch_size=25)
    assert type(model.opt_state.inner[1]).__name__ == "TraceState"


# ---------------------------------------------------------------- non-finite losses


def test_exploding_training_raises_with_the_last_good_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    t = rng.standard_normal((64, 2)).astype(np.float32)
    model = init_weights(network([dense(8, activation="tanh"), dense(2)]), 1, 4)
    with np.errstate(all="ignore"), pytest.raises(TrainingError) as info:
        train_nn(model, X, t, optimizer=sgd(1e20), batch_size=8)
    message = str(info.value)
    assert "epoch 1" in message and "batch " in message  # counted from 1, as the scripts print
    good = info.value.model
    assert all(np.isfinite(a).all() for a in tree_leaves(good.params))
    with np.errstate(all="ignore"):
        assert math.isfinite(evaluate_nn(good, X, t)["loss"]), "the attached model is not good"


def test_inf_in_params_fails_at_the_first_batch():
    X, y = _blobs(40)
    model = _mlp()
    b = np.array(model.params[1]["b"])
    b[0] = np.inf  # an infinite logit: log-softmax gives inf - inf = NaN
    bad = attrs.evolve(model, params=(model.params[0], {**model.params[1], "b": b}, {}))
    with (
        np.errstate(all="ignore"),
        pytest.raises(TrainingError, match="epoch 1, batch 1 of 3") as info,
    ):
        train_nn(bad, X, y, batch_size=16)
    assert info.value.model.step == 0
    assert _params_equal(info.value.model.params, bad.params)


# ---------------------------------------------------------------- evaluate_nn


def test_evaluate_accuracy_matches_predictions_and_ignores_batch_size():
    X, y = _blobs(101)
    model = train_nn(_mlp(), X, y, batch_size=32)
    full = evaluate_nn(model, X, y)
    assert 0.0 <= full["accuracy"] <= 1.0
    expected = float((predict(model, X).argmax(axis=1) == y).mean())
    assert full["accuracy"] == expected
    for batch_size in (1, 7, 100, 1000):
        part = evaluate_nn(model, X, y, batch_size=batch_size)
        assert part["accuracy"] == full["accuracy"]
        assert part["loss"] == pytest.approx(full["loss"], rel=1e-5)


def test_evaluate_with_one_hot_targets_agrees():
    X, y = _blobs(50)
    model = _mlp()
    a, b = evaluate_nn(model, X, y), evaluate_nn(model, X, np.eye(2)[y])
    assert a["accuracy"] == b["accuracy"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def test_mse_regression_has_no_accuracy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    model = init_weights(network([dense(2)]), 1, 3)
    result = evaluate_nn(model, X, X[:, :2])
    assert set(result) == {"loss", "n"}


# ---------------------------------------------------------------- bad inputs


def _bad_call(case):
    X, y = _blobs(20)
    model = _mlp()
    if case == "label too big":
        y = y.copy()
        y[3] = 2
    elif case == "negative label":
        y = y - 1
    elif case == "float labels":
        y = y.astype(np.float64)
    elif case == "wrong length":
        y = y[:-1]
    elif case == "empty X":
        X, y = X[:0], y[:0]
    elif case == "non-finite X":
        X = X.copy()
        X[5, 1] = np.nan
    elif case == "wrong sample shape":
        X = np.ones((20, 3), dtype=np.float32)
    kwargs = {"batch_size": 0} if case == "batch_size 0" else {}
    return model, X, y, kwargs


BAD = {
    "label too big": (ValueError, "labels"),
    "negative label": (ValueError, "labels"),
    "float labels": (TypeError, "integer"),
    "wrong length": (ValueError, "rows"),
    "empty X": (ValueError, "empty"),
    "non-finite X": (ValueError, "non-finite"),
    "wrong sample shape": (ValueError, "shape"),
    "batch_size 0": (ValueError, "batch_size"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("fn", [train_nn, evaluate_nn], ids=lambda f: f.__name__)
def test_bad_inputs_raise_clear_errors(fn, case):
    model, X, y, kwargs = _bad_call(case)
    error, text = BAD[case]
    with pytest.raises(error, match=text) as info:
        fn(model, X, y, **kwargs)
    assert fn.__name__ in str(info.value)


def test_images_without_channel_axis_are_accepted():
    X, y = _stripes(16)
    model = init_weights(network([conv2d(3, 2), flatten(), dense(2), softmax()]), 8, 8)
    a = predict(model, X)
    b = predict(model, X[:, None])
    assert np.array_equal(a, b)
    for path, leaf in tree_items(train_nn(model, X, y).params):
        assert np.isfinite(leaf).all(), path
