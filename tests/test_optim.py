"""Optimizers against hand-written steps: sgd (torch's momentum convention), Adam (the paper),
AdamW, RMSprop, Adadelta, clipping and chains; purity, read-only outputs and validation."""

from __future__ import annotations

import numpy as np
import pytest

import fran
from fran import (
    AdadeltaState,
    AdamState,
    ChainState,
    EmptyState,
    RmspropState,
    SgdState,
    adadelta,
    adam,
    adamw,
    apply_updates,
    chain,
    clip_by_global_norm,
    rmsprop,
    sgd,
)
from fran.optim import (
    ScaleByAdamState,
    TraceState,
    from_legacy,
    get_optimizer,
    known_state,
    state_name,
)
from fran.schedules import cosine
from fran.tree import freeze, tree_items, tree_map


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return freeze(
        (
            {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)},
            {},
            {"w": rng.standard_normal((2, 2, 1, 1)), "b": rng.standard_normal(2)},
        )
    )


def _grads(step, like):
    rng = np.random.default_rng(100 + step)
    return freeze(tree_map(lambda a: rng.standard_normal(a.shape), like))


def _step(opt, grads, state, params):
    """One update applied: (new params, new state)."""
    updates, state = opt.update(grads, state, params)
    return apply_updates(params, updates), state


def _structure(tree):
    return [(path, np.shape(a)) for path, a in tree_items(tree)]


def _allclose(a, b, **kw):
    for (path, x), (_, y) in zip(tree_items(a), tree_items(b), strict=True):
        np.testing.assert_allclose(x, y, err_msg=path, **kw)


# ---------------------------------------------------------------- sgd


def test_sgd_without_momentum_is_one_plain_step():
    params, grads = _params(), _grads(0, _params())
    opt = sgd(0.1)
    new, state = _step(opt, grads, opt.init(params), params)
    _allclose(new, tree_map(lambda p, g: p - 0.1 * g, params, grads), rtol=1e-15)
    assert isinstance(state.inner[1], TraceState) and state.inner[2].count == 1


def test_sgd_with_momentum_follows_torch_for_three_steps():
    lr, mu = 0.05, 0.9
    params = _params()
    opt = sgd(lr, momentum=mu)
    state = opt.init(params)
    p = [np.array(a) for _, a in tree_items(params)]
    buf = [None] * len(p)
    for step in range(3):
        grads = _grads(step, params)
        params, state = _step(opt, grads, state, params)
        for i, (_, g) in enumerate(tree_items(grads)):  # torch.optim.SGD, dampening 0
            buf[i] = g.copy() if buf[i] is None else mu * buf[i] + g
            p[i] = p[i] - lr * buf[i]
    for (path, a), expected in zip(tree_items(params), p, strict=True):
        np.testing.assert_allclose(a, expected, rtol=1e-13, err_msg=path)
    for (path, v), expected in zip(tree_items(state.inner[1].trace), buf, strict=True):
        np.testing.assert_allclose(v, expected, rtol=1e-13, err_msg=path)


# ---------------------------------------------------------------- adam


def test_one_adam_step_by_hand():
    # lr 0.1, b1 0.9, b2 0.999, eps 1e-8, p = (1, 1), g = (0.5, -2):
    #   m = 0.1 g = (0.05, -0.2);   v = 0.001 g^2 = (0.00025, 0.004)
    #   m_hat = m / 0.1 = (0.5, -2); v_hat = v / 0.001 = (0.25, 4); sqrt(v_hat) = (0.5, 2)
    #   p - 0.1 m_hat / (sqrt(v_hat) + 1e-8) = (1 - 0.1 * 0.5/0.50000001, 1 + 0.1 * 2/2.00000001)
    #                                        = (0.900000002, 1.0999999995)
    params = freeze({"w": np.array([1.0, 1.0])})
    grads = freeze({"w": np.array([0.5, -2.0])})
    opt = adam(0.1)
    new, state = _step(opt, grads, opt.init(params), params)
    np.testing.assert_allclose(new["w"], [0.900000002, 1.0999999995], rtol=1e-15)
    moments = state.inner[1]
    assert moments.count == 1
    np.testing.assert_allclose(moments.mu["w"], [0.05, -0.2], rtol=1e-15)
    np.testing.assert_allclose(moments.nu["w"], [0.00025, 0.004], rtol=1e-12)


def test_five_adam_steps_equal_the_paper():
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-6
    params = _params()
    opt = adam(lr, b1=b1, b2=b2, eps=eps)
    state = opt.init(params)
    p = [np.array(a) for _, a in tree_items(params)]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    for t in range(1, 6):  # Kingma & Ba, Algorithm 1 (as torch.optim.Adam)
        grads = _grads(t, params)
        params, state = _step(opt, grads, state, params)
        for i, (_, g) in enumerate(tree_items(grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    state = state.inner[1]  # ScaleByAdamState
    assert state.count == 5
    for (path, a), expected in zip(tree_items(params), p, strict=True):
        np.testing.assert_allclose(a, expected, rtol=1e-12, err_msg=path)
    for (path, a), expected in zip(tree_items(state.mu), m, strict=True):
        np.testing.assert_allclose(a, expected, rtol=1e-12, err_msg=f"first moment {path}")
    for (path, a), expected in zip(tree_items(state.nu), v, strict=True):
        np.testing.assert_allclose(a, expected, rtol=1e-12, err_msg=f"second moment {path}")


# ---------------------------------------------------------------- structure and purity


@pytest.mark.parametrize("opt", [sgd(0.1), sgd(0.1, momentum=0.9), adam(1e-3)], ids=str)
def test_states_keep_the_params_tree(opt):
    params = _params()
    state = opt.init(params)
    for _ in range(2):
        params, state = _step(opt, _grads(0, params), state, params)
        assert _structure(params) == _structure(_params())
        inner = state.inner[1]
        trees = (inner.mu, inner.nu) if isinstance(inner, ScaleByAdamState) else (inner.trace,)
        for tree in trees:
            assert _structure(tree) == _structure(params)
            assert type(tree) is tuple and all(type(d) is dict for d in tree)


ALL_OPTIMIZERS = [
    sgd(0.1),
    sgd(0.1, momentum=0.9),
    sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    adam(1e-3),
    adam(1e-3, weight_decay=0.1),
    adamw(1e-3),
    rmsprop(),
    rmsprop(momentum=0.5),
    adadelta(),
    clip_by_global_norm(0.5),
    chain(clip_by_global_norm(0.5), adam(1e-2)),
    adam(cosine(1e-2, 10)),
]


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=lambda o: o.name)
def test_updates_are_pure_and_return_read_only_params(opt):
    params = _params()
    state = opt.init(params)
    params, state = _step(opt, _grads(0, params), state, params)  # a non-zero state
    grads = _grads(1, params)
    for _, a in tree_items((params, grads, state)):
        assert not isinstance(a, np.ndarray) or not a.flags.writeable
    before = [np.array(a, copy=True) for _, a in tree_items((params, grads, state))]
    new, new_state = _step(opt, grads, state, params)
    for (path, a), b in zip(tree_items((params, grads, state)), before, strict=True):
        assert np.array_equal(a, b), f"{opt.name} changed its input {path}"
    for path, a in tree_items(new):
        assert not a.flags.writeable, path
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
    assert not any(
        np.shares_memory(a, b)
        for a, b in zip(
            [a for _, a in tree_items(new)], [a for _, a in tree_items(params)], strict=True
        )
    )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: sgd(0.0), "lr"),
        (lambda: sgd(-0.1), "lr"),
        (lambda: sgd(True), "lr"),
        (lambda: sgd(0.1, momentum=1.5), "momentum"),
        (lambda: sgd(0.1, momentum=1.0), "momentum"),
        (lambda: sgd(0.1, momentum=-0.1), "momentum"),
        (lambda: adam(0.0), "lr"),
        (lambda: adam(-1e-3), "lr"),
        (lambda: adam(1e-3, b1=1.0), "b1"),
        (lambda: adam(1e-3, b2=1.5), "b2"),
        (lambda: adam(1e-3, eps=0.0), "eps"),
        (lambda: adam(1e-3, weight_decay=-0.1), "weight_decay"),
        (lambda: adam(float("nan")), "lr"),
        (lambda: sgd(0.1, nesterov=True), "nesterov"),
        (lambda: sgd(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: adamw(0.0), "lr"),
        (lambda: adamw(1e-3, b1=-0.1), "b1"),
        (lambda: adamw(1e-3, weight_decay=-0.01), "weight_decay"),
        (lambda: rmsprop(-1.0), "lr"),
        (lambda: rmsprop(alpha=1.5), "alpha"),
        (lambda: rmsprop(eps=0), "eps"),
        (lambda: rmsprop(momentum=1.0), "momentum"),
        (lambda: adadelta(0), "lr"),
        (lambda: adadelta(rho=-0.5), "rho"),
        (lambda: adadelta(eps=-1e-6), "eps"),
        (lambda: clip_by_global_norm(0), "max_norm"),
        (lambda: clip_by_global_norm(-1.0), "max_norm"),
        (lambda: chain(), "chain"),
        (lambda: chain(adam(), "sgd"), "chain"),
    ],
)
def test_bad_hyperparameters_raise(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_ravel_round_trips_a_tree_and_keeps_dtypes():
    from fran.tree import ravel

    tree = (
        {"w": np.arange(6.0).reshape(2, 3), "b": np.array([7.0, 8.0])},
        {},
        {"w": np.array([[9, 10]], dtype=np.int32)},
    )
    vector, unravel = ravel(tree)
    assert vector.ndim == 1 and vector.size == 10
    np.testing.assert_array_equal(vector, [0, 1, 2, 3, 4, 5, 7, 8, 9, 10])
    back = unravel(vector * 2)
    assert back[1] == {} and back[0]["w"].shape == (2, 3) and back[2]["w"].dtype == np.int32
    np.testing.assert_array_equal(back[0]["b"], [14.0, 16.0])
    np.testing.assert_array_equal(back[2]["w"], [[18, 20]])
    assert back[0]["w"].base is back[0]["b"].base  # views of one vector


def test_ravel_of_an_empty_tree():
    from fran.tree import ravel

    vector, unravel = ravel(({}, {}))
    assert vector.size == 0 and unravel(vector) == ({}, {})


def test_adam_params_and_moments_are_read_only_views_of_vectors():
    params = ({"w": np.ones((2, 3)), "b": np.zeros(3)}, {"w": np.ones(4)})
    opt = adam(0.1)
    state = opt.init(params)
    grads = tree_map(lambda a: np.full_like(a, 0.5), params)
    for _ in range(3):  # the second and later steps start from views, as in training
        params, state = _step(opt, grads, state, params)
    for tree in (params, state.inner[1].mu, state.inner[1].nu):
        leaves = [a for _, a in tree_items(tree)]
        assert all(not a.flags.writeable for a in leaves)
        with pytest.raises(ValueError):
            leaves[0][...] = 0


# ---------------------------------------------------------------- the other rules, by hand


def _one(opt, p, g, steps=1):
    params, state = freeze({"w": np.array(p, float)}), None
    state = opt.init(params)
    for _ in range(steps):
        params, state = _step(opt, freeze({"w": np.array(g, float)}), state, params)
    return params["w"], state


def test_sgd_weight_decay_and_nesterov_by_hand():
    # p = 2, g = 1, wd 0.5, momentum 0.5, lr 0.1: g' = 1 + 0.5 * 2 = 2; b = 2;
    # nesterov: d = 2 + 0.5 * 2 = 3; p = 2 - 0.3 = 1.7
    p, state = _one(sgd(0.1, momentum=0.5, nesterov=True, weight_decay=0.5), [2.0], [1.0])
    np.testing.assert_allclose(p, [1.7], rtol=1e-15)
    np.testing.assert_allclose(state.inner[1].trace["w"], [2.0], rtol=1e-15)
    assert state.inner[2].count == 1
    # without nesterov: p = 2 - 0.1 * 2 = 1.8
    p, _ = _one(sgd(0.1, momentum=0.5, weight_decay=0.5), [2.0], [1.0])
    np.testing.assert_allclose(p, [1.8], rtol=1e-15)


def test_adam_l2_and_adamw_decoupled_by_hand():
    # adam wd 0.5, p = 2, g = 1: g' = 2, first step of Adam moves by lr * sign = 0.1 (eps aside)
    p, state = _one(adam(0.1, weight_decay=0.5, eps=1e-300), [2.0], [1.0])
    np.testing.assert_allclose(p, [1.9], rtol=1e-15)
    np.testing.assert_allclose(state.inner[1].mu["w"], [0.2], rtol=1e-15)  # (1 - b1) g' with L2
    # adamw wd 0.5: p = 2 (1 - 0.1 * 0.5) - 0.1 = 1.8; mu from the raw gradient
    p, state = _one(adamw(0.1, weight_decay=0.5, eps=1e-300), [2.0], [1.0])
    np.testing.assert_allclose(p, [1.8], rtol=1e-15)
    np.testing.assert_allclose(state.inner[0].mu["w"], [0.1], rtol=1e-15)
    assert isinstance(state.inner[0], ScaleByAdamState)


def test_rmsprop_by_hand():
    # alpha 0.75, eps 0.25, g = 2: v = 0.25 * 4 = 1; d = 2 / (sqrt(1) + 0.25) = 1.6;
    # p = 1 - 0.1 * 1.6 = 0.84 (eps inside the root would give 2 / sqrt(1.25) = 1.789: p 0.821)
    p, state = _one(rmsprop(0.1, alpha=0.75, eps=0.25), [1.0], [2.0])
    np.testing.assert_allclose(p, [0.84], rtol=1e-15)
    np.testing.assert_allclose(state.inner[0].square_avg["w"], [1.0], rtol=1e-15)
    # momentum 0.5, two steps: v2 = 0.75 + 1 = 1.75; b2 = 0.5 * 2 + 2 / sqrt(1.75)
    # eps 0.25: b1 = d1 = 1.6; v2 = 0.75 + 1 = 1.75; b2 = 0.5 * 1.6 + 2 / (sqrt(1.75) + 0.25)
    p, state = _one(rmsprop(0.1, alpha=0.75, eps=0.25, momentum=0.5), [1.0], [2.0], steps=2)
    b2 = 0.5 * 1.6 + 2 / (np.sqrt(1.75) + 0.25)
    np.testing.assert_allclose(state.inner[1].trace["w"], [b2], rtol=1e-14)
    np.testing.assert_allclose(p, [1.0 - 0.1 * 1.6 - 0.1 * b2], rtol=1e-14)
    assert isinstance(state.inner[1], TraceState) and state.inner[2].count == 2


def test_adadelta_by_hand():
    # rho 0.5, eps 1e-2, g = 2: v = 0.5 * 4 = 2; d = sqrt(0 + .01) / sqrt(2.01) * 2;
    # u = 0.5 d^2; p = 1 - lr d
    p, state = _one(adadelta(1.0, rho=0.5, eps=1e-2), [1.0], [2.0])
    d = 0.1 / np.sqrt(2.01) * 2
    np.testing.assert_allclose(p, [1.0 - d], rtol=1e-14)
    np.testing.assert_allclose(state.inner[0].square_avg["w"], [2.0], rtol=1e-15)
    np.testing.assert_allclose(state.inner[0].acc_delta["w"], [0.5 * d * d], rtol=1e-14)
    assert isinstance(state.inner[0], fran.ScaleByAdadeltaState)


def test_clip_by_global_norm_scales_only_large_gradients():
    grads = freeze(({"w": np.array([3.0]), "b": np.array([0.0])}, {}, {"w": np.array([[4.0]])}))
    clip = clip_by_global_norm(1.0)
    out, state = clip.update(grads, clip.init(grads), grads)  # global norm 5
    assert state == EmptyState()
    np.testing.assert_allclose(out[0]["w"], [3.0 / (5 + 1e-6)], rtol=1e-15)
    np.testing.assert_allclose(out[2]["w"], [[4.0 / (5 + 1e-6)]], rtol=1e-15)
    small, _ = clip_by_global_norm(10.0).update(grads, EmptyState(), grads)
    np.testing.assert_array_equal(small[0]["w"], [3.0])
    assert all(not a.flags.writeable for _, a in tree_items(out))


def test_chain_feeds_each_transformation_the_previous_updates():
    params = freeze({"w": np.array([1.0, 1.0])})
    grads = freeze({"w": np.array([30.0, 40.0])})  # norm 50: clipped to norm ~1
    opt = chain(clip_by_global_norm(1.0), sgd(0.1))
    assert opt.name.startswith("chain(clip_by_global_norm(max_norm=1.0), sgd(")
    state = opt.init(params)
    assert isinstance(state, ChainState) and state.inner[0] == EmptyState()
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [-0.1 * 30 / (50 + 1e-6), -0.1 * 40 / (50 + 1e-6)])
    assert state.inner[1].inner[2].count == 1


def test_a_schedule_is_called_with_the_steps_before():
    seen = []

    def lr(step):
        seen.append(step)
        return 0.1 * (step + 1)

    params = freeze({"w": np.array([0.0])})
    grads = freeze({"w": np.array([1.0])})
    for opt in (sgd(lr), adam(lr), adamw(lr), rmsprop(lr), adadelta(lr)):
        seen.clear()
        state = opt.init(params)
        for _ in range(3):
            _, state = opt.update(grads, state, params)
        assert seen == [0, 1, 2], opt.name
    p, _ = _one(sgd(lr), [0.0], [1.0], steps=3)
    np.testing.assert_allclose(p, [-(0.1 + 0.2 + 0.3)], rtol=1e-15)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1"])
@pytest.mark.parametrize("make", [sgd, adam, adamw, rmsprop, adadelta])
def test_a_bad_schedule_value_names_the_optimizer_and_step(make, bad):
    opt = make(lambda step: 0.1 if step < 2 else bad)
    params = freeze({"w": np.array([0.0])})
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(params, state, params)
    with pytest.raises(ValueError, match=rf"{make.__name__}: .* at step 2"):
        opt.update(params, state, params)


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=lambda o: o.name)
def test_updates_and_states_are_read_only_and_follow_the_rules(opt):
    params = _params()
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(_grads(0, params), state, params)
        params = apply_updates(params, updates)
    assert _structure(updates) == _structure(params)
    leaves = [a for _, a in tree_items((updates, params, state)) if not isinstance(a, int)]
    assert leaves and all(not a.flags.writeable for a in leaves)

    def check(s):  # every state a class fran.io knows; numbers or params-shaped trees
        assert known_state(state_name(type(s))) is type(s)
        for field in s._fields:
            value = getattr(s, field)
            if isinstance(s, ChainState):
                for inner in value:
                    check(inner)
            elif not isinstance(value, int):
                assert _structure(value) == _structure(params), field

    check(state)


def test_numpy_numbers_are_accepted_as_hyperparameters_and_schedule_values():
    opt = adam(np.float64(0.01), b1=np.float32(0.5))
    p, _ = _one(sgd(lambda step: np.float32(0.5)), [1.0], [1.0])
    np.testing.assert_allclose(p, [0.5])
    assert "lr=0.01" in opt.name
    with pytest.raises(ValueError, match="lr"):
        sgd(np.bool_(True))


def test_apply_updates_keeps_dtypes_and_is_read_only():
    params = freeze({"w": np.ones(3, np.float32)})
    new = apply_updates(params, {"w": np.full(3, 0.5)})
    assert new["w"].dtype == np.float32 and not new["w"].flags.writeable
    np.testing.assert_array_equal(new["w"], [1.5, 1.5, 1.5])
    assert params["w"][0] == 1.0


def test_old_states_still_construct_by_field_name_and_become_chains():
    state = SgdState(velocity=({"w": np.zeros(2)},))
    assert state.count == 0
    assert from_legacy(state) == ChainState(
        (EmptyState(), TraceState(state.velocity), fran.ScaleByLearningRateState(0))
    )
    old = AdamState(count=3, mu=(), nu=())
    assert from_legacy(ChainState((EmptyState(), old))).inner[1].inner[1] == ScaleByAdamState(
        3, (), ()
    )
    rms = from_legacy(RmspropState(2, "v", "b"))
    assert [type(s).__name__ for s in rms.inner] == [
        "ScaleByRmsState",
        "TraceState",
        "ScaleByLearningRateState",
    ]
    assert from_legacy(AdadeltaState(4, "v", "u")).inner[0] == fran.ScaleByAdadeltaState("v", "u")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sgd", "sgd(lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)"),
        ("adam", adam().name),
        ("adamw", adamw().name),
        ("rmsprop", rmsprop().name),
        ("adadelta", adadelta().name),
    ],
)
def test_names_mean_the_defaults(name, expected):
    assert get_optimizer(name).name == expected
    opt = adam(0.5)
    assert get_optimizer(opt) is opt


def test_unknown_name_lists_the_known():
    with pytest.raises(ValueError, match="adadelta"):
        get_optimizer("lamb")


def test_train_nn_accepts_a_chain_and_keeps_its_state():
    model = fran.init_weights(fran.network([fran.dense(n_out=3), fran.softmax()]), 1, 4)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 3, 20)
    opt = chain(clip_by_global_norm(1.0), adamw(1e-2))
    model = fran.train_nn(model, X, y, optimizer=opt, batch_size=8)
    assert isinstance(model.opt_state, ChainState) and model.opt_state.inner[1].inner[0].count == 3
    model = fran.train_nn(model, X, y, optimizer=opt, batch_size=8)
    assert model.opt_state.inner[1].inner[0].count == 6
    assert all(a.dtype == np.float32 for _, a in tree_items(model.params))


def test_train_nn_surfaces_a_bad_schedule_value():
    model = fran.init_weights(fran.network([fran.dense(n_out=3), fran.softmax()]), 1, 4)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 3, 20)
    opt = adam(lambda step: 1e-3 if step < 2 else -1.0)
    with pytest.raises(ValueError, match="adam: the lr schedule returned -1.0 at step 2"):
        fran.train_nn(model, X, y, optimizer=opt, batch_size=8)


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=lambda o: o.name)
def test_a_state_of_none_is_the_fresh_state(opt):
    params, grads = _params(), _grads(0, _params())
    a, sa = opt.update(grads, None, params)
    b, sb = opt.update(grads, opt.init(params), params)
    _allclose(a, b, rtol=0)
    _allclose(sa, sb, rtol=0)
