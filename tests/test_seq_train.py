"""Sequences through the training API: integer token ids through apply/vjp/train_step/predict/
evaluate_nn, train_nn and evaluate_nn on (N, T) targets with sequence_cross_entropy, and a batch
cut into pieces giving the whole batch's loss and gradient (pieces weighted by counted positions).
Torch-free: by-hand loops and reference computations."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

import fran
from fran import engine, parallel
from fran.train import minibatches

V, T, C = 7, 6, 4


def _lstm_lm():
    return fran.network([fran.embedding(V, C), fran.lstm(5), fran.dense(V)])


def _rnn_lm():
    return fran.network([fran.embedding(V, C), fran.rnn(5), fran.dense(V)])


def _tiny_gpt(dropout=0.1):
    return fran.network(
        [
            fran.embedding(V, C),
            fran.position_embedding(),
            fran.residual([fran.layernorm(), fran.attention(2, causal=True, dropout=dropout)]),
            fran.residual([fran.layernorm(), fran.dense(8, activation="gelu_tanh"), fran.dense(C)]),
            fran.layernorm(),
            fran.dense(V),
        ]
    )


def _data(n, seed=0, ragged=True):
    """Ids (n, T) and learnable targets (id + 1 mod V), the positions after a random length
    ignored (-1)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (n, T))
    y = (ids + 1) % V
    if ragged:
        lengths = rng.integers(1, T + 1, n)
        y[np.arange(T)[None, :] >= lengths[:, None]] = -1
    return ids, y


def _ce_loop(logits, target, ignore):
    """Mean cross-entropy over the positions whose target is not `ignore`, one by one."""
    total, m = 0.0, 0
    for n in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if target[n, t] == ignore:
                continue
            z = [float(v) for v in logits[n, t]]
            top = max(z)
            total += top + math.log(sum(math.exp(v - top) for v in z)) - z[target[n, t]]
            m += 1
    return total / m


# ---------------------------------------------------------------- integer ids


def test_the_embedding_declares_it_takes_ids_and_a_network_inherits_it_from_its_first_layer():
    assert fran.embedding.takes_ids is True
    assert engine.takes_ids(fran.embedding(V, C)) and engine.takes_ids(_lstm_lm())
    assert not engine.takes_ids(fran.dense(3))
    assert not engine.takes_ids(fran.network([fran.dense(3), fran.embedding(V, C)]))
    assert "takes_ids" not in attrs.fields_dict(fran.embedding)  # a class property, not a field


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_ids_through_apply_and_vjp_equal_float_ids(dtype):
    spec = _tiny_gpt()
    params = fran.init(spec, (T,), rng=1, dtype=np.float64)
    ids, _ = _data(5)
    x = ids.astype(dtype)
    y = fran.apply(spec, params, x)
    np.testing.assert_array_equal(y, fran.apply(spec, params, ids.astype(np.float64)))
    out, pullback = fran.vjp(spec, params, x, key=3, training=True)
    ref, ref_pullback = fran.vjp(spec, params, ids.astype(np.float64), key=3, training=True)
    np.testing.assert_array_equal(out, ref)
    dy = np.random.default_rng(2).standard_normal(out.shape)
    (grads, dx), (ref_grads, _) = pullback(dy), ref_pullback(dy)
    for a, b in zip(fran.tree.tree_leaves(grads), fran.tree.tree_leaves(ref_grads), strict=True):
        np.testing.assert_array_equal(a, b)
    assert dx.shape == x.shape and not dx.any()
    assert y.dtype == np.float64


def test_integers_are_refused_where_the_first_layer_does_not_take_ids():
    spec = fran.network([fran.dense(3)])
    params = fran.init(spec, (4,))
    with pytest.raises(TypeError, match=r"fran\.apply: x must be a float array .* int64"):
        fran.apply(spec, params, np.zeros((2, 4), np.int64))
    model = fran.init_weights(spec, 1, 4)
    with pytest.raises(ValueError, match=r"train_step: x must be a non-empty float array"):
        fran.train_step(
            fran.sgd(0.1), fran.mse, model, (np.zeros((2, 4), np.int64), np.zeros((2, 3)))
        )


def test_float_ids_are_accepted_only_near_an_integer_and_ids_out_of_range_are_refused():
    spec = fran.embedding(V, C)
    params = fran.init(spec, (T,), dtype=np.float64)
    ids, _ = _data(2)
    np.testing.assert_array_equal(
        fran.apply(spec, params, ids + 1e-4), fran.apply(spec, params, ids)
    )
    with pytest.raises(ValueError, match=r"token ids must be integers, got 1\.5"):
        fran.apply(spec, params, np.full((1, T), 1.5))
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\), got min 0 max 7"):
        fran.apply(spec, params, np.full((1, T), 7) * (np.arange(T) > 0))
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\), got min -1"):
        fran.apply(spec, params, -np.ones((1, T), np.int64))
    with pytest.raises(TypeError, match="float or integer \\(token id\\) array"):
        fran.apply(spec, params, np.zeros((1, T), bool))


def test_integer_ids_through_train_step_predict_and_evaluate_nn_equal_float_ids():
    model = fran.init_weights(_tiny_gpt(), 1, T, dtype=np.float64)
    ids, y = _data(8)
    loss = fran.sequence_cross_entropy(-1)
    a, va = fran.train_step(fran.adamw(1e-2), loss, model, (ids, y))
    b, vb = fran.train_step(fran.adamw(1e-2), loss, model, (ids.astype(np.float64), y))
    assert va == vb and a == b
    out = fran.predict(a, ids)
    assert out.shape == (8, T, V) and out.dtype == np.float64
    np.testing.assert_array_equal(out, fran.predict(a, ids.astype(np.float64)))
    assert fran.evaluate_nn(a, ids, y, loss=loss) == fran.evaluate_nn(
        a, ids.astype(np.float64), y, loss=loss
    )


# ---------------------------------------------------------------- train_nn / evaluate_nn


def test_evaluate_nn_on_sequences_matches_loops_over_counted_positions():
    model = fran.init_weights(_lstm_lm(), 1, T, seed=3, dtype=np.float64)
    ids, y = _data(23, seed=4)
    loss = fran.sequence_cross_entropy(-1)
    result = fran.evaluate_nn(model, ids, y, loss=loss, batch_size=5)
    logits = fran.predict(model, ids)
    assert result["loss"] == pytest.approx(_ce_loop(logits, y, -1), rel=1e-12)
    hits = m = 0
    for n in range(len(ids)):
        for t in range(T):
            if y[n, t] != -1:
                hits += int(np.argmax(logits[n, t]) == y[n, t])
                m += 1
    assert result["positions"] == m == int((y != -1).sum()) < ids.size
    assert result["accuracy"] == hits / m and result["n"] == 23
    # without an ignore index every position counts; the batch size changes nothing
    whole = fran.evaluate_nn(model, ids, np.roll(ids, -1, 1), loss=fran.sequence_cross_entropy())
    assert whole["positions"] == ids.size
    assert whole == fran.evaluate_nn(
        model, ids, np.roll(ids, -1, 1), loss=fran.sequence_cross_entropy(), batch_size=7
    )


@pytest.mark.parametrize("build", [_lstm_lm, _tiny_gpt], ids=["lstm", "gpt"])
def test_train_nn_on_sequences_is_a_fold_of_train_step_and_learns(build, monkeypatch):
    monkeypatch.setenv("FRAN_NUM_THREADS", "2")
    model = fran.init_weights(build(), 1, T, seed=5)
    ids, y = _data(80, seed=6)
    loss = fran.sequence_cross_entropy(-1)
    opt = fran.adamw(2e-2)
    before = fran.evaluate_nn(model, ids, y, loss=loss)["loss"]
    seen = []
    trained = fran.train_nn(
        model, ids, y, optimizer=opt, batch_size=32, loss=loss, on_batch=lambda i, v: seen.append(v)
    )
    # by hand: train_step over the epoch's shuffle ([seed, epoch], as train_nn draws it)
    hand = attrs.evolve(model, opt_state=opt.init(model.params))
    values = []
    for batch in minibatches(ids, y, 32, np.random.default_rng([model.seed, 0])):
        hand, value = fran.train_step(opt, loss, hand, batch)
        values.append(value)
    assert seen == values and len(values) == 3
    assert trained == attrs.evolve(hand, epoch=1) and trained.step == 3
    for _ in range(6):
        trained = fran.train_nn(trained, ids, y, optimizer=opt, batch_size=32, loss=loss)
    assert fran.evaluate_nn(trained, ids, y, loss=loss)["loss"] < before - 0.1


def test_sequence_targets_are_checked_before_training():
    model = fran.init_weights(_lstm_lm(), 1, T)
    ids, y = _data(4)
    loss = fran.sequence_cross_entropy(-1)
    with pytest.raises(ValueError, match=r"train_nn: .* targets \(N, T\); .* y has shape \(4, 5\)"):
        fran.train_nn(model, ids, y[:, :5], loss=loss)
    with pytest.raises(TypeError, match="evaluate_nn: integer targets expected in y"):
        fran.evaluate_nn(model, ids, y.astype(float), loss=loss)
    with pytest.raises(ValueError, match=r"in \[0, 7\) for 7 outputs or be ignore_index=-1"):
        fran.train_nn(model, ids, np.where(y == -1, 7, y), loss=loss)
    with pytest.raises(ValueError, match="every target in y is ignore_index=-1"):
        fran.evaluate_nn(model, ids, np.full_like(y, -1), loss=loss)
    with pytest.raises(ValueError, match="cross_entropy expects outputs \\(K,\\).*sequence_cross"):
        fran.train_nn(model, ids, y[:, 0], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"expects outputs \(T, V\)"):
        flat = fran.init_weights(fran.network([fran.dense(V)]), 1, T)
        fran.evaluate_nn(flat, ids.astype(float), y, loss=loss)


# ---------------------------------------------------------------- a cut batch


def _grads_and_loss(model, loss, x, y):
    """The loss and gradients train_step hands its optimizer (caught by a recording one)."""
    seen = []

    def update(grads, state, params):
        seen.append(grads)
        return fran.tree.tree_map(np.zeros_like, grads), state

    _, value = fran.train_step(fran.Optimizer("record", lambda p: (), update), loss, model, (x, y))
    return value, fran.tree.tree_leaves(seen[0])


def _reference(model, loss, x, y):
    """The whole batch's loss and gradients by fran.vjp, uncut."""
    out, pullback = fran.vjp(model.spec, model.params, x)
    value, dy = loss.fn(out, y)
    return value, fran.tree.tree_leaves(pullback(dy)[0])


@pytest.mark.parametrize("build", [_rnn_lm, _lstm_lm], ids=["rnn", "lstm"])
def test_a_cut_batch_gives_the_whole_batch_loss_and_gradient(build, monkeypatch):
    monkeypatch.setenv("FRAN_NUM_THREADS", "2")
    model = fran.init_weights(build(), 1, T, seed=7, dtype=np.float64)
    assert not engine.whole_batch(model.spec)  # train_step cuts its batches
    ids, y = _data(40, seed=8, ragged=False)
    y[:20, 1:] = -1  # the first piece counts 20 positions, the second 20 * T
    loss = fran.sequence_cross_entropy(-1)
    value, grads = _grads_and_loss(model, loss, ids, y)
    ref_value, ref_grads = _reference(model, loss, ids, y)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    assert value == pytest.approx(_ce_loop(fran.predict(model, ids), y, -1), rel=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    # the test can fail: weighting the pieces by their samples misses the whole batch's loss
    halves = [loss.fn(fran.predict(model, ids[a:b]), y[a:b])[0] for a, b in ((0, 20), (20, 40))]
    assert abs((halves[0] + halves[1]) / 2 - ref_value) > 1e-3
    assert value == pytest.approx((20 * halves[0] + 20 * T * halves[1]) / (20 + 20 * T), rel=1e-12)


def test_batch_mean_weights_pieces_by_the_loss_count_and_falls_back_when_one_counts_nothing(
    monkeypatch,
):
    monkeypatch.setenv("FRAN_NUM_THREADS", "2")
    x = np.arange(40.0)[:, None]
    target = np.ones((40, 3), np.int64)
    target[:20, 1:] = 0  # piece 1 counts 20, piece 2 counts 60

    def mean_of_counted(x, t):
        counted = t != 0
        return float((x * counted).sum() / counted.sum()), (np.array(float(len(x))),), None

    def count(t):
        return int((t != 0).sum())

    value, grads, _ = parallel.batch_mean(mean_of_counted, x, target, count=count)
    assert value == pytest.approx(mean_of_counted(x, target)[0], rel=1e-15)
    assert float(grads[0]) == pytest.approx((20 * 20 + 60 * 20) / 80)  # pieces of 20 samples each
    # by sample count (the default) the two pieces weigh alike
    value_by_samples, _, _ = parallel.batch_mean(mean_of_counted, x, target)
    assert value_by_samples == pytest.approx((9.5 + 29.5) / 2)
    target[:20] = 0  # the first piece counts nothing: computed whole, in one call
    calls = []

    def recording(x, t):
        calls.append(len(x))
        return mean_of_counted(x, t)

    value, _, _ = parallel.batch_mean(recording, x, target, count=count)
    assert calls == [40] and value == pytest.approx(29.5)


def test_a_cut_batch_with_a_piece_all_ignored_is_computed_whole(monkeypatch):
    monkeypatch.setenv("FRAN_NUM_THREADS", "2")
    model = fran.init_weights(_rnn_lm(), 1, T, seed=9, dtype=np.float64)
    ids, y = _data(40, seed=10)
    y[:20] = -1
    loss = fran.sequence_cross_entropy(-1)
    value, grads = _grads_and_loss(model, loss, ids, y)
    ref_value, ref_grads = _reference(model, loss, ids, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
