"""The conformance suite (fran.testing) over every registered layer, plus spec and edge-case tests.

The parametrisation reads `fran.registry.names()`, so an installed plugin is covered automatically
(through the generic strategy unless tests/helpers/strategies.py knows it).
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from helpers import strategies
from hypothesis import given
from hypothesis import strategies as st

import fran
from fran import registry
from fran.testing import check_init, check_layer

LAYERS = {
    "dense": lambda: fran.dense(3),
    "conv2d": lambda: fran.conv2d(3, 2),
    "conv2d_transpose": lambda: fran.conv2d_transpose(3, 2),
    "maxpooling": lambda: fran.maxpooling(2),
    "flatten": fran.flatten,
    "softmax": fran.softmax,
    "network": lambda: fran.network([fran.flatten(), fran.dense(2)]),
}


# ---------------------------------------------------------------- conformance, every layer


@pytest.mark.parametrize("name", registry.names())
def test_conformance(name):
    @given(case=strategies.cases(name), seed=strategies.seeds)
    def check(case, seed):
        check_layer(case.spec, case.params, case.x, rng=seed, state=case.state)

    check()


# check_init feeds random normal samples; token ids must be integers (tests/test_seq_layers.py)
INTEGER_INPUT = {"embedding"}


@pytest.mark.parametrize("name", sorted(set(registry.names()) - INTEGER_INPUT))
def test_init_conformance(name):
    @given(case=strategies.cases(name), dtype=st.sampled_from([np.float32, np.float64]))
    def check(case, dtype):
        check_init(case.spec, case.shape, rng=0, dtype=dtype)

    check()


@given(case=strategies.classifier_cases(), seed=strategies.seeds)
def test_classifier_network(case, seed):
    """conv2d -> maxpooling -> flatten -> dense -> softmax, differentiated as one layer."""
    check_layer(case.spec, case.params, case.x, rng=seed)


@given(case=strategies.autoencoder_cases(), seed=strategies.seeds)
def test_autoencoder_network(case, seed):
    """conv2d -> conv2d_transpose, differentiated as one layer."""
    check_layer(case.spec, case.params, case.x, rng=seed)


# ---------------------------------------------------------------- the checker itself can fail


def _broken_dense_vjp(spec, params, x):
    y, pullback = fran.vjp(fran.dense(spec.n_out), params, x)

    def wrong(dy, **kwargs):
        g, gx = pullback(dy, **kwargs)
        return {"w": g["w"], "b": 2 * g["b"]}, gx  # the bias gradient is doubled

    return y, wrong


def test_check_layer_catches_a_wrong_gradient(monkeypatch):
    @attrs.frozen
    class baddense:
        n_out: int = 3
        activation: str = "identity"

    rules = registry.rules_for(fran.dense(3))
    monkeypatch.setitem(
        registry._BY_TYPE,
        baddense,
        rules._replace(name="baddense", spec_cls=baddense, vjp=_broken_dense_vjp),
    )
    rng = np.random.default_rng(0)
    params = fran.init(fran.dense(3), (4,), rng, dtype=np.float64)
    with pytest.raises(AssertionError, match="finite differences"):
        check_layer(baddense(), params, rng.standard_normal((5, 4)), rng=1)


def test_check_layer_catches_an_in_place_write(monkeypatch):
    @attrs.frozen
    class inplace:
        pass

    def apply(spec, params, x):
        x += 1  # the DLFS mistake
        return x

    rules = registry.rules_for(fran.flatten())
    monkeypatch.setitem(
        registry._BY_TYPE, inplace, rules._replace(name="inplace", spec_cls=inplace, apply=apply)
    )
    with pytest.raises(AssertionError, match="read-only"):
        check_layer(inplace(), {}, np.ones((2, 3)), rng=0)


# ---------------------------------------------------------------- specs are values


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_specs_are_frozen_hashable_values(name):
    a, b = LAYERS[name](), LAYERS[name]()
    assert a == b and hash(a) == hash(b) and a is not b
    assert {a: 1}[b] == 1
    field = attrs.fields(type(a))[0] if attrs.fields(type(a)) else None
    if field is not None:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(a, field.name, getattr(a, field.name))


def test_specs_differ_by_value():
    assert fran.dense(3) != fran.dense(4)
    assert fran.dense(3) != fran.dense(3, activation="relu")
    assert fran.conv2d(3, 2) != fran.conv2d(3, 2, stride=2)
    assert fran.maxpooling(2) != fran.maxpooling(2, stride=1)
    assert fran.conv2d(3, 2) != fran.conv2d_transpose(3, 2)
    assert fran.network([fran.dense(2)]) != fran.network([fran.dense(3)])
    assert fran.network([fran.dense(2)]).layers == (fran.dense(2),)  # a list becomes a tuple


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: fran.dense(0), "n_out"),
        (lambda: fran.dense(True), "n_out"),
        (lambda: fran.dense(2.0), "n_out"),
        (lambda: fran.dense(np.array(3)), "n_out"),
        (lambda: fran.dense(3, activation="swish"), "activation"),
        (lambda: fran.dense(3, weight_init="bogus"), "weight_init"),
        (lambda: fran.conv2d(0, 2), "k"),
        (lambda: fran.conv2d(3, -1), "channels"),
        (lambda: fran.conv2d(3, 2, stride=0), "stride"),
        (lambda: fran.conv2d(3, 2, padding=-1), "padding"),
        (lambda: fran.conv2d(3, 2, padding=True), "padding"),
        (lambda: fran.conv2d(3, 2, activation="softplus"), "activation"),
        (lambda: fran.conv2d_transpose(0, 2), "k"),
        (lambda: fran.conv2d_transpose(3, 0), "channels"),
        (lambda: fran.conv2d_transpose(3, 2, stride=0), "stride"),
        (lambda: fran.conv2d_transpose(3, 2, activation="Relu"), "activation"),
        (lambda: fran.maxpooling(0), "k"),
        (lambda: fran.maxpooling(2, stride=0), "stride"),
        (lambda: fran.maxpooling(False), "k"),
        (lambda: fran.network([fran.dense(2)], -1, 0), "epoch"),
    ],
)
def test_invalid_hyperparameters_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_network_rejects_non_layers():
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        fran.network([fran.dense(2), "dense"])
    with pytest.raises(ValueError, match="non-empty"):
        fran.network([])


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_huge_logits_is_finite(dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]])
    x = x.astype(dtype)
    y, pullback = fran.vjp(fran.softmax(), {}, x)
    assert y.dtype == dtype
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[0], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=1e-6)
    _, gx = pullback(np.ones_like(x))
    assert np.isfinite(gx).all()


def test_maxpooling_ties_give_the_gradient_to_the_first_maximum():
    x = np.array([[[[1.0, 5.0, 2.0, 2.0], [5.0, 0.0, 2.0, 2.0]]]])  # windows: 5 at (0,1) & (1,0)
    y, pullback = fran.vjp(fran.maxpooling(2), {}, x)
    np.testing.assert_array_equal(y, [[[[5.0, 2.0]]]])
    _, dx = pullback(np.array([[[[10.0, 7.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 7.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


def test_overlapping_maxpooling_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9.0  # the maximum of all four 2x2 windows
    x[0, 0, 0, 0] = -1.0
    _, pullback = fran.vjp(fran.maxpooling(2, stride=1), {}, x)
    _, dx = pullback(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 10.0
    np.testing.assert_array_equal(dx, expected)


def _maxpool_by_loops(spec, x, dy):
    """Reference: every window, its first row-major argmax (np.argmax), gradients summed."""
    N, C, _, _ = x.shape
    k, s = spec.k, spec.s
    _, _, OH, OW = dy.shape
    y, dx = np.zeros(dy.shape), np.zeros(x.shape)
    for n, c, r, q in np.ndindex(N, C, OH, OW):
        window = x[n, c, r * s : r * s + k, q * s : q * s + k]
        i, j = divmod(int(np.argmax(window)), k)
        y[n, c, r, q] = window[i, j]
        dx[n, c, r * s + i, q * s + j] += dy[n, c, r, q]
    return y, dx


@given(structure=strategies.maxpooling_structures(), seed=strategies.seeds)
def test_maxpooling_with_many_ties_matches_loops(structure, seed):
    spec, shape = structure
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (2, *shape)).astype(np.float64)  # three values: ties everywhere
    y, pullback = fran.vjp(spec, {}, x)
    dy = rng.standard_normal(y.shape)
    ref_y, ref_dx = _maxpool_by_loops(spec, x, dy)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_allclose(pullback(dy)[1], ref_dx, rtol=1e-12, atol=1e-12)
