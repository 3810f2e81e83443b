"""Fuzz the pure core and the layers of contract v2 with junk: only documented exceptions, and the
inputs are never changed (every array handed in is read-only, so a write would raise)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_fuzz import DOCUMENTED, FUZZ, junk  # the same junk and the same documented kinds

import fran
from fran import activation, batchnorm, dropout, residual
from fran.tree import freeze


def _only_documented(call):
    try:
        call()
    except DOCUMENTED:
        pass


def _net():
    return fran.network(
        [fran.conv2d(k=3, channels=2), batchnorm(), activation("relu"),
         residual([fran.conv2d(k=3, channels=2, padding=1), dropout(0.3)]),
         fran.flatten(), fran.dense(3), fran.softmax()], 0, 0,
    )  # fmt: skip


MODEL = fran.init_weights(_net(), 6, 6)


@FUZZ
@given(rate=junk, momentum=junk, eps=junk, name=junk, layers=junk)
def test_new_layer_constructors(rate, momentum, eps, name, layers):
    _only_documented(lambda: dropout(rate))
    _only_documented(lambda: batchnorm(momentum=momentum))
    _only_documented(lambda: batchnorm(eps=eps))
    _only_documented(lambda: activation(name))
    _only_documented(lambda: residual(layers))
    _only_documented(lambda: residual([fran.dense(2)], shortcut=layers))


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=7),
    elements=st.integers(-3, 3),
)


def _frozen(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@FUZZ
@given(x=arrays, target=arrays, key=junk, training=st.booleans())
def test_engine_and_train_step_on_junk(x, target, key, training):
    x, target = _frozen(x), _frozen(target)
    x0, t0 = x.copy(), target.copy()
    spec, params, state = MODEL.spec, MODEL.params, MODEL.state
    _only_documented(lambda: fran.apply(spec, params, x, state=state, key=key, training=training))
    _only_documented(lambda: fran.vjp(spec, params, x, state=state, key=key, training=training))
    _only_documented(lambda: fran.init(spec, x.shape, dtype=x.dtype))
    _only_documented(lambda: fran.init_state(spec, x.shape[1:], dtype=x.dtype))
    _only_documented(lambda: fran.train_step(fran.adam(), fran.cross_entropy, MODEL, (x, target)))
    assert np.array_equal(x, x0) and np.array_equal(target, t0)


@FUZZ
@given(optimizer=junk, loss=junk, model=junk, batch=junk)
def test_train_step_arguments(optimizer, loss, model, batch):
    _only_documented(lambda: fran.train_step(optimizer, fran.cross_entropy, MODEL, batch))
    _only_documented(lambda: fran.train_step(fran.sgd(0.1), loss, MODEL, batch))
    _only_documented(lambda: fran.train_step(fran.sgd(0.1), fran.mse, model, batch))


@FUZZ
@given(n=st.integers(1, 6), scale=st.sampled_from([1.0, 1e4, 1e30]))
def test_valid_batches_train_and_leave_the_model_alone(n, scale):
    rng = np.random.default_rng(n)
    x = freeze(rng.normal(size=(n, 1, 6, 6)).astype(np.float32) * np.float32(scale))
    y = freeze(rng.integers(0, 3, n))
    before = MODEL
    try:
        new, value = fran.train_step(fran.adam(), fran.cross_entropy, MODEL, (x, y))
    except ValueError as exc:  # batch norm on one value per channel is an error, as in torch
        assert n == 1 and "more than 1 value per channel" in str(exc)
        return
    assert new.step == 1 and MODEL == before
