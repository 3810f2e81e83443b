"""Each primitive transformation, one or two steps computed by hand (numbers chosen so that
every term shows: eps large enough that inside and outside a root differ); chains in order;
carry_over between optimizers; train_nn's warning when it starts a fresh state."""

from __future__ import annotations

import math
import warnings

import attrs
import numpy as np
import pytest

import fran
from fran import (
    ChainState,
    EmptyState,
    ScaleByAdadeltaState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    TraceState,
    add_decayed_weights,
    chain,
    clip_by_global_norm,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)
from fran.optim import carry_over, describe, from_legacy
from fran.train import OptimizerStateWarning
from fran.tree import freeze, tree_items, tree_map


def _w(*values):
    return freeze({"w": np.array(values, float)})


def _steps(transform, grads, params=(1.0,)):
    """The updates after each of the given gradients (one value each), and the last state."""
    p, state, out = _w(*params), None, []
    state = transform.init(p)
    for g in grads:
        updates, state = transform.update(_w(*g), state, p)
        out.append(updates["w"].tolist())
    return out, state


def test_add_decayed_weights_adds_wd_p():
    out, state = _steps(add_decayed_weights(0.5), [[1.0, -1.0]], params=(2.0, 4.0))
    assert out == [[1.0 + 0.5 * 2.0, -1.0 + 0.5 * 4.0]] and state == EmptyState()
    g = _w(1.0)
    assert add_decayed_weights(0.0).update(g, EmptyState(), _w(3.0))[0] is g  # unchanged


def test_trace_is_momentum_and_nesterov():
    # f1 = 1; f2 = 0.5 * 1 + 2 = 2.5
    out, state = _steps(trace(0.5), [[1.0], [2.0]])
    assert out == [[1.0], [2.5]] and state.trace["w"].tolist() == [2.5]
    # nesterov: g + decay f: 1 + 0.5 * 1 = 1.5; 2 + 0.5 * 2.5 = 3.25
    out, state = _steps(trace(0.5, nesterov=True), [[1.0], [2.0]])
    assert out == [[1.5], [3.25]] and state.trace["w"].tolist() == [2.5]
    # decay 0 passes the updates through, its trace stays zero
    out, state = _steps(trace(0.0), [[1.0], [2.0]])
    assert out == [[1.0], [2.0]] and state.trace["w"].tolist() == [0.0]


def test_scale_by_adam_by_hand():
    # b1 0.5, b2 0.75, eps 0.25; g = 2: m = 1, v = 1; m_hat = 1 / 0.5 = 2, v_hat = 1 / 0.25 = 4;
    # out = 2 / (2 + 0.25) (eps inside the root would give 2 / sqrt(4.25))
    # g = 4: m = 0.5 + 2 = 2.5, v = 0.75 + 4 = 4.75; m_hat = 2.5 / 0.75, v_hat = 4.75 / 0.4375
    out, state = _steps(scale_by_adam(0.5, 0.75, 0.25), [[2.0], [4.0]])
    np.testing.assert_allclose(out[0], [2 / 2.25], rtol=1e-15)
    np.testing.assert_allclose(
        out[1], [(2.5 / 0.75) / (math.sqrt(4.75 / 0.4375) + 0.25)], rtol=1e-15
    )
    assert isinstance(state, ScaleByAdamState) and state.count == 2
    assert state.mu["w"].tolist() == [2.5] and state.nu["w"].tolist() == [4.75]


def test_scale_by_rms_puts_eps_outside_the_root():
    # alpha 0.75, eps 0.25, g = 2: v = 0.25 * 4 = 1; out = 2 / (1 + 0.25) = 1.6 (inside: 1.789)
    # g = 1: v = 0.75 + 0.25 = 1; out = 1 / 1.25 = 0.8
    out, state = _steps(scale_by_rms(0.75, 0.25), [[2.0], [1.0]])
    np.testing.assert_allclose(out, [[1.6], [0.8]], rtol=1e-15)
    assert isinstance(state, ScaleByRmsState) and state.square_avg["w"].tolist() == [1.0]


def test_scale_by_adadelta_by_hand():
    # rho 0.5, eps 0.25, g = 2: v = 2; d = sqrt(0 + 0.25) / sqrt(2 + 0.25) * 2 = 2/3; u = 0.5 d^2
    out, state = _steps(scale_by_adadelta(0.5, 0.25), [[2.0]])
    np.testing.assert_allclose(out, [[2 / 3]], rtol=1e-15)
    assert isinstance(state, ScaleByAdadeltaState) and state.square_avg["w"].tolist() == [2.0]
    np.testing.assert_allclose(state.acc_delta["w"], [0.5 * (2 / 3) ** 2], rtol=1e-15)


def test_scale_by_learning_rate_with_a_number_and_a_schedule():
    out, state = _steps(scale_by_learning_rate(0.5), [[2.0], [2.0]])
    assert out == [[-1.0], [-1.0]] and state == ScaleByLearningRateState(2)
    out, state = _steps(scale_by_learning_rate(lambda step: 0.25 * (step + 1)), [[2.0], [2.0]])
    assert out == [[-0.5], [-1.0]] and state.count == 2
    with pytest.raises(ValueError, match="scale_by_learning_rate: the lr schedule returned -1"):
        _steps(scale_by_learning_rate(lambda step: -1.0), [[2.0]])


def test_chain_applies_in_order():
    # p = 2, g = 1: decay then scale: -0.5 (1 + 2) = -1.5; scale then decay: -0.5 + 2 = 1.5
    out, state = _steps(
        chain(add_decayed_weights(1.0), scale_by_learning_rate(0.5)), [[1.0]], (2.0,)
    )
    assert out == [[-1.5]] and state == ChainState((EmptyState(), ScaleByLearningRateState(1)))
    out, _ = _steps(chain(scale_by_learning_rate(0.5), add_decayed_weights(1.0)), [[1.0]], (2.0,))
    assert out == [[1.5]]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: fran.sgd(0.1, momentum=0.5, weight_decay=0.5), "add_decayed_weights trace scale"),
        (lambda: fran.adam(), "add_decayed_weights scale_by_adam scale"),
        (lambda: fran.adamw(), "scale_by_adam add_decayed_weights scale"),
        (lambda: fran.rmsprop(), "scale_by_rms trace scale"),
        (lambda: fran.adadelta(), "scale_by_adadelta scale"),
    ],
)
def test_the_optimizers_are_chains_of_the_primitives(make, expected):
    state = make().init(_w(1.0))
    kinds = {
        EmptyState: ("add_decayed_weights",),
        TraceState: ("trace",),
        ScaleByAdamState: ("scale_by_adam",),
        ScaleByRmsState: ("scale_by_rms",),
        ScaleByAdadeltaState: ("scale_by_adadelta",),
        ScaleByLearningRateState: ("scale",),
    }
    assert [kinds[type(s)][0] for s in state.inner] == expected.split()
    assert describe(state).startswith("chain(")


PRIMITIVES = [
    add_decayed_weights(0.1),
    trace(0.9),
    trace(0.9, nesterov=True),
    scale_by_adam(),
    scale_by_rms(),
    scale_by_adadelta(),
    scale_by_learning_rate(0.1),
    clip_by_global_norm(0.1),
]


@pytest.mark.parametrize("t", PRIMITIVES, ids=lambda t: t.name)
def test_primitives_write_into_nothing_and_return_read_only_arrays(t):
    rng = np.random.default_rng(0)
    params = freeze(({"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, {}))
    grads = freeze(tree_map(lambda a: rng.normal(size=a.shape), params))
    _, state = t.update(grads, t.init(params), params)
    before = [np.array(a) for _, a in tree_items((grads, state, params))]
    updates, new = t.update(grads, state, params)
    for (path, a), b in zip(tree_items((grads, state, params)), before, strict=True):
        assert np.array_equal(a, b), path
    for path, a in tree_items((updates, new)):
        assert not isinstance(a, np.ndarray) or not a.flags.writeable, path


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: add_decayed_weights(-1.0), "weight_decay"),
        (lambda: trace(1.0), "decay"),
        (lambda: trace(0.0, nesterov=True), "nesterov"),
        (lambda: scale_by_adam(b1=1.0), "b1"),
        (lambda: scale_by_adam(eps=0.0), "eps"),
        (lambda: scale_by_rms(alpha=2.0), "alpha"),
        (lambda: scale_by_adadelta(rho=-0.1), "rho"),
        (lambda: scale_by_learning_rate(0.0), "lr"),
    ],
)
def test_primitives_validate_their_arguments(make, field):
    with pytest.raises(ValueError, match=field):
        make()


# ---------------------------------------------------------------- carrying a state over


def _params():
    return freeze(({"w": np.ones((2, 2)), "b": np.zeros(2)}, {}))


def _trained(opt, steps=2):
    params, state = _params(), None
    state = opt.init(params)
    for i in range(steps):
        grads = freeze(tree_map(lambda a, i=i: np.full_like(a, 0.5 + i), params))
        _, state = opt.update(grads, state, params)
    return state


def test_adam_continues_under_adamw_and_under_a_chain_with_clipping():
    old = _trained(fran.adam(1e-2))
    for new in (fran.adamw(1e-3), chain(clip_by_global_norm(1.0), fran.adam(1e-3))):
        state = carry_over(old, new.init(_params()))
        moments = [s for s in _slots(state) if isinstance(s, ScaleByAdamState)]
        assert len(moments) == 1 and moments[0].count == 2, new.name
        assert moments[0].mu[0]["w"] is old.inner[1].mu[0]["w"]  # the very arrays
        assert type(state) is type(new.init(_params()))


def _slots(state):
    if isinstance(state, ChainState):
        return [s for inner in state.inner for s in _slots(inner)]
    return [state]


def test_different_optimizers_do_not_carry_over():
    params = _params()
    assert carry_over(_trained(fran.sgd(0.1)), fran.adam().init(params)) is None
    assert carry_over(_trained(fran.adam()), fran.rmsprop().init(params)) is None
    other = freeze(({"w": np.ones((3, 2)), "b": np.zeros(2)}, {}))  # another shape
    assert carry_over(_trained(fran.adam()), fran.adam().init(other)) is None


def test_sgd_with_and_without_momentum_share_a_structure():
    old = _trained(fran.sgd(0.1))
    state = carry_over(old, fran.sgd(0.1, momentum=0.9).init(_params()))
    assert state is not None and state.inner[2].count == 2


def test_a_legacy_state_continues_under_adamw():
    from fran.optim import AdamState

    params = _params()
    old = AdamState(5, tree_map(np.zeros_like, params), tree_map(np.ones_like, params))
    state = carry_over(from_legacy(old), fran.adamw().init(params))
    assert state.inner[0] == ScaleByAdamState(*old) and state.inner[2].count == 5


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((24, 4)).astype(np.float32), rng.integers(0, 3, 24)


def _model():
    return fran.init_weights(fran.network([fran.dense(n_out=3), fran.softmax()]), 1, 4)


def test_train_nn_warns_naming_both_when_it_starts_afresh():
    X, y = _data()
    model = fran.train_nn(_model(), X, y, optimizer=fran.adam(1e-2), batch_size=8)
    with pytest.warns(OptimizerStateWarning) as record:
        switched = fran.train_nn(model, X, y, optimizer=fran.sgd(0.1), batch_size=8)
    (message,) = [str(w.message) for w in record]
    assert "scale_by_adam" in message and "sgd(lr=0.1" in message and "fresh state" in message
    assert record[0].filename == __file__  # points at the caller
    assert switched.opt_state.inner[2].count == 3  # sgd's own count, from 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = fran.train_nn(attrs.evolve(model, opt_state=None), X, y, optimizer=fran.sgd(0.1))
        more = fran.train_nn(model, X, y, optimizer=fran.adamw(1e-2), batch_size=8)
    assert fresh.opt_state.inner[2].count == 1
    assert more.opt_state.inner[0].count == 6  # adam's moments went on under adamw
