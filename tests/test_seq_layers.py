"""The sequence layers, loss and per-position dense by hand and by reference loops (no torch).

The FD property tests of every vjp run through tests/test_layers.py (tests/helpers/strategies.py draws
each sequence layer); here: values worked out by hand, naive loops as oracles, causal masking
checked by perturbing the future, token-id validation, and integer data through a Model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import strategies
from hypothesis import given
from hypothesis import strategies as st

import fran
from fran import registry
from fran.layers.activations import ACTIVATIONS
from fran.testing import check_layer
from fran.tree import tree_map


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


def _init(spec, shape, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    params = fran.init(spec, shape, rng, dtype=np.float64)
    return tree_map(lambda a: a + noise * rng.standard_normal(a.shape), params)


# ---------------------------------------------------------------- gelu


def test_gelu_values_by_hand():
    z = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    exact = [v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in z]
    tanh_form = [v / 2 * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in z]
    np.testing.assert_allclose(ACTIVATIONS["gelu"].f(z), exact, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(ACTIVATIONS["gelu_tanh"].f(z), tanh_form, rtol=1e-14, atol=1e-300)
    assert ACTIVATIONS["gelu"].f(np.array([1.0]))[0] == pytest.approx(0.8413447460685429, abs=1e-15)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh"])
def test_gelu_keeps_float32_and_its_derivative_is_the_slope(name):
    act = ACTIVATIONS[name]
    z = np.linspace(-4, 4, 81)
    assert act.f(z.astype(np.float32)).dtype == np.float32
    assert act.vjp(z.astype(np.float32), None, np.ones(81, np.float32)).dtype == np.float32
    h = 1e-6
    slope = (act.f(z + h) - act.f(z - h)) / (2 * h)
    np.testing.assert_allclose(act.vjp(z, act.f(z), np.ones_like(z)), slope, atol=1e-8)


# ---------------------------------------------------------------- embedding


def test_embedding_looks_up_rows_and_scatters_gradients():
    spec = fran.embedding(4, 2)
    w = np.arange(8.0).reshape(4, 2)
    x = np.array([[1.0, 3.0, 1.0]])
    y, pullback = fran.vjp(spec, {"w": w}, x)
    np.testing.assert_array_equal(y, [[[2, 3], [6, 7], [2, 3]]])
    dy = np.array([[[1.0, 10.0], [100.0, 1000.0], [2.0, 20.0]]])
    grads, dx = pullback(dy)
    np.testing.assert_array_equal(grads["w"], [[0, 0], [3, 30], [0, 0], [100, 1000]])
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    assert pullback(dy, input_grad=False)[1] is None


def test_embedding_keeps_the_params_dtype_and_takes_integer_arrays():
    spec = fran.embedding(5, 3)
    params = fran.init(spec, (4,), 0, dtype=np.float32)
    assert (
        fran.apply(spec, params, np.array([[0.0, 4.0, 2.0, 2.0]], np.float32)).dtype == np.float32
    )
    ids = np.array([[0, 4, 2, 2]])
    np.testing.assert_array_equal(
        registry.rules_for(spec).apply(spec, params, ids), params["w"][ids]
    )


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.array([[0.0, 1.5]]), "must be integers, got 1.5"),
        (np.array([[0.0, 5.0]]), r"must lie in \[0, 5\), got min 0 max 5"),
        (np.array([[-1.0, 2.0]]), r"must lie in \[0, 5\), got min -1"),
    ],
)
def test_embedding_rejects_what_is_not_a_token_id(x, match):
    spec = fran.embedding(5, 3)
    params = fran.init(spec, (2,), 0)
    with pytest.raises(ValueError, match=r"embedding\(vocab=5, dim=3\).*" + match):
        fran.apply(spec, params, x)


def test_embedding_init_is_standard_normal_as_torch():
    w = fran.init(fran.embedding(400, 50), (3,), 0, dtype=np.float64)["w"]
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01


@given(case=strategies.embedding_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_embedding_init_and_dtypes(case, dtype):
    """check_init's dtype rules, on integer ids (check_init itself draws normal samples)."""
    params = fran.init(case.spec, case.shape, 0, dtype=dtype)
    y, pullback = fran.vjp(case.spec, params, case.x.astype(dtype))
    assert y.dtype == dtype and y.shape == (len(case.x), *fran.output_shape(case.spec, case.shape))
    grads, dx = pullback(np.ones_like(y))
    assert grads["w"].dtype == dtype and dx.dtype == dtype


# ---------------------------------------------------------------- layernorm


def test_layernorm_by_hand():
    x = np.array([[[1.0, 2.0, 3.0, 6.0]]])
    mu, var = 3.0, (4 + 1 + 0 + 9) / 4
    want = (x - mu) / math.sqrt(var + 1e-5)
    params = {"w": np.array([1.0, 2.0, 1.0, 1.0]), "b": np.array([0.0, 0.0, 5.0, 0.0])}
    np.testing.assert_allclose(
        fran.apply(fran.layernorm(), params, x), want * params["w"] + params["b"], rtol=1e-14
    )
    init = fran.init(fran.layernorm(), (3, 4), 0, dtype=np.float64)
    np.testing.assert_array_equal(init["w"], np.ones(4))
    np.testing.assert_array_equal(init["b"], np.zeros(4))


# ---------------------------------------------------------------- recurrent layers


def test_lstm_one_step_by_hand():
    """One input, one hidden unit, one step: every gate written out in scalars."""
    p = {
        "w_ih": np.array([[0.5], [-0.3], [0.8], [0.2]]),  # rows i, f, g, o
        "w_hh": np.array([[0.1], [0.2], [0.3], [0.4]]),
        "b_ih": np.array([0.1, 0.2, -0.1, 0.0]),
        "b_hh": np.array([0.0, 0.1, 0.1, -0.2]),
    }
    x = 1.5
    i = _sigmoid(0.5 * x + 0.1)
    f = _sigmoid(-0.3 * x + 0.3)
    g = math.tanh(0.8 * x + 0.0)
    o = _sigmoid(0.2 * x - 0.2)
    c = f * 0 + i * g
    h1 = o * math.tanh(c)
    # a second step, h_1 and c_1 fed back
    x2 = -0.7
    i2 = _sigmoid(0.5 * x2 + 0.1 + 0.1 * h1)
    f2 = _sigmoid(-0.3 * x2 + 0.3 + 0.2 * h1)
    g2 = math.tanh(0.8 * x2 + 0.3 * h1)
    o2 = _sigmoid(0.2 * x2 - 0.2 + 0.4 * h1)
    h2 = o2 * math.tanh(f2 * c + i2 * g2)
    y = fran.apply(fran.lstm(1), p, np.array([[[x], [x2]]]))
    np.testing.assert_allclose(y.ravel(), [h1, h2], rtol=1e-14)


def _rnn_loop(p, x):
    N, T, C = x.shape
    H = p["w_hh"].shape[0]
    out = np.zeros((N, T, H))
    for n in range(N):
        h = np.zeros(H)
        for t in range(T):
            h = np.tanh(p["w_ih"] @ x[n, t] + p["b_ih"] + p["w_hh"] @ h + p["b_hh"])
            out[n, t] = h
    return out


def test_rnn_matches_a_loop_over_samples_and_steps():
    spec = fran.rnn(3)
    p = _init(spec, (5, 2))
    x = np.random.default_rng(1).standard_normal((4, 5, 2))
    np.testing.assert_allclose(fran.apply(spec, p, x), _rnn_loop(p, x), rtol=1e-13)


@pytest.mark.parametrize("make", [fran.rnn, fran.lstm])
def test_recurrent_init_is_torch_uniform(make):
    H = 40
    p = fran.init(make(H), (3, 7), 0, dtype=np.float64)
    rows = 4 * H if make is fran.lstm else H
    assert p["w_ih"].shape == (rows, 7) and p["w_hh"].shape == (rows, H)
    for leaf in p.values():
        assert np.abs(leaf).max() <= H**-0.5
        assert np.abs(leaf).max() > 0.9 * H**-0.5  # spread over the whole interval


@pytest.mark.parametrize("make", [fran.rnn, fran.lstm])
def test_recurrent_output_at_t_ignores_later_inputs(make):
    spec = make(3)
    p = _init(spec, (6, 2))
    x = np.random.default_rng(2).standard_normal((2, 6, 2))
    later = x.copy()
    later[:, 4:] += 1.0
    a, b = fran.apply(spec, p, x), fran.apply(spec, p, later)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.allclose(a[:, 4:], b[:, 4:])


# ---------------------------------------------------------------- attention


def _attention_loop(p, x, heads, causal):
    """Scaled dot-product attention written with loops over samples, heads and positions."""
    N, T, C = x.shape
    d = C // heads
    y = np.zeros_like(x)
    for n in range(N):
        qkv = x[n] @ p["w_in"].T + p["b_in"]
        q, k, v = qkv[:, :C], qkv[:, C : 2 * C], qkv[:, 2 * C :]
        o = np.zeros((T, C))
        for hd in range(heads):
            cols = slice(hd * d, (hd + 1) * d)
            for i in range(T):
                js = range(i + 1) if causal else range(T)
                scores = [q[i, cols] @ k[j, cols] / math.sqrt(d) for j in js]
                top = max(scores)
                e = [math.exp(s - top) for s in scores]
                for j, ej in zip(js, e, strict=True):
                    o[i, cols] += ej / sum(e) * v[j, cols]
        y[n] = o @ p["w_out"].T + p["b_out"]
    return y


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [1, 2, 3])
def test_attention_matches_a_loop(heads, causal):
    spec = fran.attention(heads, causal=causal)
    p = _init(spec, (5, 6))
    x = np.random.default_rng(3).standard_normal((2, 5, 6))
    np.testing.assert_allclose(
        fran.apply(spec, p, x), _attention_loop(p, x, heads, causal), rtol=1e-12, atol=1e-12
    )


def test_causal_attention_never_looks_ahead_and_its_gradient_says_so():
    spec = fran.attention(2, causal=True)
    p = _init(spec, (6, 4))
    x = np.random.default_rng(4).standard_normal((1, 6, 4))
    later = x.copy()
    later[:, 3:] += 1.0
    np.testing.assert_array_equal(fran.apply(spec, p, x)[:, :3], fran.apply(spec, p, later)[:, :3])
    y, pullback = fran.vjp(spec, p, x)
    dy = np.zeros_like(y)
    dy[:, 2] = 1.0  # the output at position 2 depends on positions 0..2 only
    _, dx = pullback(dy)
    assert np.all(dx[:, 3:] == 0) and np.all(np.abs(dx[:, :3]).sum(axis=-1) > 0)


def test_attention_init_is_torchs():
    C = 64
    p = fran.init(fran.attention(4), (3, C), 0, dtype=np.float64)
    a_in = math.sqrt(6 / (C + 3 * C))  # xavier_uniform_ of a (3C, C) matrix
    assert a_in * 0.95 < np.abs(p["w_in"]).max() <= a_in
    assert C**-0.5 * 0.95 < np.abs(p["w_out"]).max() <= C**-0.5
    assert not p["b_in"].any() and not p["b_out"].any()


def test_attention_dropout_drops_weights_in_training_only():
    spec = fran.attention(1, dropout=0.5)
    p = _init(spec, (4, 2))
    x = np.random.default_rng(5).standard_normal((3, 4, 2))
    infer = fran.apply(spec, p, x)
    np.testing.assert_array_equal(infer, fran.apply(fran.attention(1), p, x))
    a, b = (fran.apply(spec, p, x, key=k, training=True) for k in (0, 1))
    assert not np.allclose(a, infer) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, fran.apply(spec, p, x, key=0, training=True))


def test_attention_heads_must_divide_channels():
    with pytest.raises(ValueError, match="3 heads must divide the 4 channels"):
        fran.output_shape(fran.attention(3), (5, 4))


# ---------------------------------------------------------------- dense on every position


def test_dense_on_a_sequence_is_dense_at_every_position():
    spec = fran.dense(3, activation="gelu")
    p = _init(spec, (4,))
    x = np.random.default_rng(6).standard_normal((2, 5, 4))
    assert fran.output_shape(spec, (5, 4)) == (5, 3)
    y, pullback = fran.vjp(spec, p, x)
    for t in range(5):
        np.testing.assert_array_equal(y[:, t], fran.apply(spec, p, np.ascontiguousarray(x[:, t])))
    dy = np.random.default_rng(7).standard_normal(y.shape)
    grads, dx = pullback(dy)
    per_t = [fran.vjp(spec, p, np.ascontiguousarray(x[:, t]))[1](dy[:, t]) for t in range(5)]
    np.testing.assert_allclose(grads["w"], sum(g["w"] for g, _ in per_t), rtol=1e-12)
    np.testing.assert_allclose(dx, np.stack([d for _, d in per_t], axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="put flatten"):
        fran.output_shape(spec, (1, 4, 4))


def test_prenorm_transformer_block_is_differentiated_whole():
    C = 4
    block = fran.network(
        [
            fran.residual([fran.layernorm(), fran.attention(2, causal=True, dropout=0.2)]),
            fran.residual([fran.layernorm(), fran.dense(8, activation="gelu"), fran.dense(C)]),
        ]
    )
    p = _init(block, (5, C))
    check_layer(block, p, np.random.default_rng(8).standard_normal((3, 5, C)), rng=0)


# ---------------------------------------------------------------- the loss


def _ce_loop(logits, target, ignore):
    total, m = 0.0, 0
    for n in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if target[n, t] == ignore:
                continue
            z = logits[n, t]
            total += math.log(sum(math.exp(v) for v in z)) - z[target[n, t]]
            m += 1
    return total / m


@pytest.mark.parametrize("ignore", [None, -1, 2])
def test_sequence_cross_entropy_matches_a_loop_and_finite_differences(ignore):
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((3, 4, 5))
    target = rng.integers(0, 5, (3, 4))
    target[0, 1] = target[2, 3] = -1 if ignore == -1 else target[0, 1]
    loss = fran.sequence_cross_entropy(ignore)
    value, grad = loss.fn(logits, target)
    assert value == pytest.approx(_ce_loop(logits, target, ignore), rel=1e-13)
    if ignore is not None:
        assert np.all(grad[target == ignore] == 0)
    v = rng.standard_normal(logits.shape)
    h = 1e-6
    numeric = (loss.fn(logits + h * v, target)[0] - loss.fn(logits - h * v, target)[0]) / (2 * h)
    assert float(np.vdot(grad, v)) == pytest.approx(numeric, rel=1e-7, abs=1e-9)


def test_sequence_cross_entropy_errors():
    loss = fran.sequence_cross_entropy(-1)
    logits = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="every target is ignore_index=-1"):
        loss.fn(logits, np.full((2, 3), -1))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        loss.fn(logits, np.full((2, 3), 4))
    with pytest.raises(ValueError, match=r"logits \(N, T, V\) and targets \(N, T\)"):
        loss.fn(logits, np.zeros((2, 4), int))
    with pytest.raises(TypeError, match="integer ids"):
        loss.fn(logits, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        fran.sequence_cross_entropy(True)
    assert loss.fn(logits.astype(np.float32), np.zeros((2, 3), int))[1].dtype == np.float32


# ---------------------------------------------------------------- token ids through a Model


def _tiny_lm(T=6, V=7, C=4):
    return fran.network(
        [
            fran.embedding(V, C),
            fran.position_embedding(),
            fran.residual([fran.layernorm(), fran.attention(2, causal=True, dropout=0.1)]),
            fran.layernorm(),
            fran.dense(V),
        ]
    )


def test_token_ids_flow_through_init_weights_train_step_and_predict():
    T, V = 6, 7
    model = fran.init_weights(_tiny_lm(T, V), 1, T)
    assert model.input_shape == (T,)
    rng = np.random.default_rng(10)
    ids = rng.integers(0, V, (8, T))
    x, y = ids.astype(np.float32), np.roll(ids, -1, axis=1)
    y[:, -1] = -1
    loss = fran.sequence_cross_entropy(-1)
    first = None
    for _ in range(30):
        model, value = fran.train_step(fran.adamw(1e-2), loss, model, (x, y))
        first = value if first is None else first
    assert value < first
    out = fran.predict(model, ids)  # integer ids, passed to the embedding uncast
    assert out.shape == (8, T, V) and out.dtype == np.float32
    np.testing.assert_allclose(out, fran.predict(model, x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="token ids must be integers"):
        fran.predict(model, x + 0.5)
