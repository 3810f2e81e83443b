"""Optimizers against hand-written steps: sgd (torch's momentum convention) and Adam (the paper)."""

from __future__ import annotations

import numpy as np
import pytest

from fran import AdamState, SgdState, adam, sgd
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


def _structure(tree):
    return [(path, np.shape(a)) for path, a in tree_items(tree)]


def _allclose(a, b, **kw):
    for (path, x), (_, y) in zip(tree_items(a), tree_items(b), strict=True):
        np.testing.assert_allclose(x, y, err_msg=path, **kw)


# ---------------------------------------------------------------- sgd


def test_sgd_without_momentum_is_one_plain_step():
    params, grads = _params(), _grads(0, _params())
    opt = sgd(0.1)
    new, state = opt.update(grads, opt.init(params), params)
    _allclose(new, tree_map(lambda p, g: p - 0.1 * g, params, grads), rtol=1e-15)
    assert isinstance(state, SgdState)


def test_sgd_with_momentum_follows_torch_for_three_steps():
    lr, mu = 0.05, 0.9
    params = _params()
    opt = sgd(lr, momentum=mu)
    state = opt.init(params)
    p = [np.array(a) for _, a in tree_items(params)]
    buf = [None] * len(p)
    for step in range(3):
        grads = _grads(step, params)
        params, state = opt.update(grads, state, params)
        for i, (_, g) in enumerate(tree_items(grads)):  # torch.optim.SGD, dampening 0
            buf[i] = g.copy() if buf[i] is None else mu * buf[i] + g
            p[i] = p[i] - lr * buf[i]
    for (path, a), expected in zip(tree_items(params), p, strict=True):
        np.testing.assert_allclose(a, expected, rtol=1e-13, err_msg=path)
    for (path, v), expected in zip(tree_items(state.velocity), buf, strict=True):
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
    new, state = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(new["w"], [0.900000002, 1.0999999995], rtol=1e-15)
    assert state.count == 1
    np.testing.assert_allclose(state.mu["w"], [0.05, -0.2], rtol=1e-15)
    np.testing.assert_allclose(state.nu["w"], [0.00025, 0.004], rtol=1e-12)


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
        params, state = opt.update(grads, state, params)
        for i, (_, g) in enumerate(tree_items(grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
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
        params, state = opt.update(_grads(0, params), state, params)
        assert _structure(params) == _structure(_params())
        trees = (state.mu, state.nu) if isinstance(state, AdamState) else (state.velocity,)
        for tree in trees:
            assert _structure(tree) == _structure(params)
            assert type(tree) is tuple and all(type(d) is dict for d in tree)


@pytest.mark.parametrize("opt", [sgd(0.1), sgd(0.1, momentum=0.9), adam(1e-3)], ids=str)
def test_updates_are_pure_and_return_read_only_params(opt):
    params = _params()
    state = opt.init(params)
    params, state = opt.update(_grads(0, params), state, params)  # a non-zero state
    grads = _grads(1, params)
    for _, a in tree_items((params, grads, state)):
        assert not isinstance(a, np.ndarray) or not a.flags.writeable
    before = [np.array(a, copy=True) for _, a in tree_items((params, grads, state))]
    new, new_state = opt.update(grads, state, params)
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
        params, state = opt.update(grads, state, params)
    for tree in (params, state.mu, state.nu):
        leaves = [a for _, a in tree_items(tree)]
        assert all(not a.flags.writeable for a in leaves)
        with pytest.raises(ValueError):
            leaves[0][...] = 0
