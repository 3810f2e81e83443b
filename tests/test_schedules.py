"""lr schedules without torch: closed forms by hand, purity, validation, and use in optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fran import adam, apply_updates, sgd
from fran.schedules import cosine, exponential, linear_warmup, step_decay
from fran.tree import freeze


def test_step_decay_by_hand():
    s = step_decay(1.0, 3, gamma=0.5)
    assert [s(t) for t in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential_by_hand():
    s = exponential(2.0, 0.5)
    assert [s(t) for t in range(4)] == [2.0, 1.0, 0.5, 0.25]


def test_cosine_by_hand():
    s = cosine(1.0, 4, min_lr=0.2)
    expected = [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)]
    np.testing.assert_allclose([s(t) for t in range(9)], expected, rtol=1e-15)
    assert s(0) == 1.0 and s(4) == pytest.approx(0.2) and s(8) == pytest.approx(1.0)  # periodic


def test_linear_warmup_by_hand():
    s = linear_warmup(step_decay(1.0, 2, 0.5), 4, start_factor=0.2)
    np.testing.assert_allclose(
        [s(t) for t in range(9)], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.5, 0.5, 0.25], rtol=1e-15
    )
    constant = linear_warmup(0.1, 2)
    np.testing.assert_allclose([constant(t) for t in range(4)], [0.1 / 3, 0.2 / 3, 0.1, 0.1])


@given(
    lr=st.floats(1e-6, 10.0),
    n=st.integers(1, 50),
    gamma=st.floats(0.01, 1.0),
    step=st.integers(0, 500),
)
def test_schedules_are_pure_and_in_range(lr, n, gamma, step):
    for s in (step_decay(lr, n, gamma), exponential(lr, gamma), cosine(lr, n, lr * gamma / 2)):
        a, b = s(step), s(step)
        assert a == b and 0 <= a <= lr * (1 + 1e-12)
    w = linear_warmup(cosine(lr, n), n, start_factor=gamma)
    assert 0 <= w(step) <= lr * (1 + 1e-12)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: step_decay(0.0, 1), "step_decay: lr"),
        (lambda: step_decay(0.1, 0), "step_size"),
        (lambda: step_decay(0.1, 1.5), "step_size"),
        (lambda: step_decay(0.1, 1, gamma=-1), "gamma"),
        (lambda: exponential(-0.1, 0.9), "exponential: lr"),
        (lambda: exponential(0.1, 0), "gamma"),
        (lambda: cosine(0.1, 0), "total_steps"),
        (lambda: cosine(0.1, 10, min_lr=0.2), "min_lr"),
        (lambda: cosine(0.1, 10, min_lr=-0.1), "min_lr"),
        (lambda: linear_warmup(0.1, 0), "warmup_steps"),
        (lambda: linear_warmup(0.1, 5, start_factor=0), "start_factor"),
        (lambda: linear_warmup(-0.1, 5), "schedule_or_lr"),
    ],
)
def test_bad_arguments_raise(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_a_negative_step_raises():
    with pytest.raises(ValueError, match="cosine: step"):
        cosine(0.1, 10)(-1)


def test_schedules_have_readable_names_in_optimizers():
    assert "cosine(lr=0.1, total_steps=10, min_lr=0.0)" in adam(cosine(0.1, 10)).name
    assert "linear_warmup(exponential(" in sgd(linear_warmup(exponential(0.1, 0.9), 3)).name


def test_sgd_follows_a_step_decay_schedule():
    opt = sgd(step_decay(1.0, 2, 0.5))
    params = freeze({"w": np.array([0.0])})
    grads = freeze({"w": np.array([1.0])})
    state = opt.init(params)
    moves = []
    for _ in range(5):
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
        moves.append(float(updates["w"][0]))
    assert moves == [-1.0, -1.0, -0.5, -0.5, -0.25]
    assert state.inner[2].count == 5  # sgd's ScaleByLearningRateState
