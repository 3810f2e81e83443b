"""fran.kernels: the compiled twins against their NumPy references, and the backend switch.

- every registered layer, forward and every gradient, both modes, float32 and float64: the two
  backends give bitwise the same values (the twins do the references' operations in the same
  order);
- the finite-difference conformance check on the NumPy backend (the rest of the suite runs it on
  the default, compiled one);
- by-hand cases of each kernel: first argmax on ties, NaN, -0.0, memory layouts, fallbacks;
- a small network trained two epochs on each backend ends with the same bits;
- `import fran` imports no Numba; FRAN_KERNELS picks the backend; no Numba gives one warning.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import strategies
from helpers.subprocess_python import run_python
from hypothesis import given, settings

import fran
from fran import engine, kernels, registry
from fran.kernels import batchnorm, epilogue, pool
from fran.layers import _pool
from fran.testing import check_layer
from fran.tree import tree_leaves, tree_map

numba = pytest.importorskip("numba")  # the comparisons need both backends

DTYPES = [np.float32, np.float64]


def _run(backend, spec, params, x, state, training, dy_seed):
    with kernels.using(backend):
        kw = {"state": state, "key": 7 if training else None, "training": training}
        y_apply = engine.apply(spec, params, x, **kw)
        y, pullback, new_state = engine.vjp_with_state(spec, params, x, **kw)
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(y.dtype)
        grads, dx = pullback(dy)
    return [y_apply, y, dx, *tree_leaves(grads), *tree_leaves(new_state)]


def _same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.strides == b.strides, f"{what}: strides {a.strides} != {b.strides}"
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b), err_msg=what)
    np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", registry.names())
def test_compiled_and_numpy_backends_agree_on_every_layer(name, dtype):
    @given(case=strategies.cases(name), seed=strategies.seeds)
    @settings(max_examples=40)
    def check(case, seed):
        cast = lambda t: tree_map(lambda a: np.asarray(a, dtype), t)  # noqa: E731
        x, params = case.x.astype(dtype), cast(case.params)
        state = cast(case.state) if case.state is not None else None
        if state is None:
            state = engine.init_state(case.spec, case.shape, dtype)
        for training in (False, True):
            ref = _run("numpy", case.spec, params, x, state, training, seed)
            fast = _run("numba", case.spec, params, x, state, training, seed)
            assert len(ref) == len(fast)
            for i, (a, b) in enumerate(zip(fast, ref, strict=True)):
                _same(a, b, f"{case.spec!r} training={training} output {i}")

    check()


@pytest.mark.parametrize("name", registry.names())
def test_finite_differences_on_the_numpy_backend(name):
    @given(case=strategies.cases(name), seed=strategies.seeds)
    @settings(max_examples=50)
    def check(case, seed):
        with kernels.using("numpy"):
            check_layer(case.spec, case.params, case.x, rng=seed, state=case.state)

    check()


# ---------------------------------------------------------------- each kernel by hand


def _bits_equal(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.strides == b.strides  # the layer after reads them with BLAS: layout is part of it
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_takes_the_first_argmax_and_propagates_nan(dtype):
    x = np.array([[[[1, 3, 3, 0], [3, 2, 1, 1], [np.nan, 0, 5, 5], [9, 9, 5, 5]]]], dtype)
    with kernels.using("numba"):
        y, arg = pool.max_pool(x, 2, 2, winners=True)
        dx = pool.max_pool_grad(np.array([[[[10, 20], [30, 40]]]], dtype), arg)
    assert isinstance(arg, pool.Argmax)
    _bits_equal(y, np.array([[[[3, 3], [np.nan, 5]]]], dtype))
    # ties: the first in row-major order wins (x[0,1] over x[1,0]; x[2,2] over the other 5s)
    expected = np.zeros((1, 1, 4, 4), dtype)
    expected[0, 0, 0, 1], expected[0, 0, 0, 2], expected[0, 0, 2, 2] = 10, 20, 40
    expected[0, 0, 3, 0] = 30  # a NaN window: as the reference, its last offset in each pass
    np.testing.assert_array_equal(dx, expected)
    y_ref, w_ref = _pool.max_pool(x, 2, 2, winners=True)
    _bits_equal(dx, _pool.max_pool_grad(np.array([[[[10, 20], [30, 40]]]], dtype), w_ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_keeps_the_references_signed_zeros(dtype):
    x = np.array([[[[0.0, -0.0, -0.0, 0.0], [-0.0, -0.0, 0.0, 0.0]]]], dtype)
    dy = np.array([[[[-1.0, -0.0]]]], dtype)
    y_ref, w_ref = _pool.max_pool(x, 2, 2, winners=True)
    with kernels.using("numba"):
        y, arg = pool.max_pool(x, 2, 2, winners=True)
        dx = pool.max_pool_grad(dy, arg)
    _bits_equal(y, y_ref)
    _bits_equal(dx, _pool.max_pool_grad(dy, w_ref))


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (2, 3), (1, 1)])
def test_max_pool_matches_the_reference_in_each_layout(k, s, channels_first):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.permutation(5 * 3 * 9 * 8).reshape(5, 3, 9, 8).astype(np.float32)  # ragged rows
    if channels_first:  # as conv2d hands its output on: (C, N, H, W) memory seen as NCHW
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    y_ref, w_ref = _pool.max_pool(x, k, s, winners=True)
    with kernels.using("numba"):
        y, arg = pool.max_pool(x, k, s, winners=True)
        y_alone, _ = pool.max_pool(x, k, s)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = pool.max_pool_grad(dy.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2), arg)
    if (k, s) == (2, 2):  # the twin's window; the others run the reference
        assert isinstance(arg, pool.Argmax) and arg.channels_first == channels_first
    _bits_equal(y, y_ref)
    _bits_equal(y_alone, y_ref)
    _bits_equal(dx, _pool.max_pool_grad(dy, w_ref))
    assert (dx.strides[0] > dx.strides[1]) != channels_first  # laid out like x


def test_max_pool_falls_back_for_what_the_twin_does_not_take():
    x = np.arange(16, dtype=np.float16).reshape(1, 1, 4, 4)
    with kernels.using("numba"):
        y, w = pool.max_pool(x, 2, 2, winners=True)
    assert isinstance(w, _pool.Winners) and y.dtype == np.float16


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_is_bitwise_the_reference(dtype, axis):
    p = np.array([[-0.0, 0.0, -1.5, np.nan], [2.0, -2.0, 0.25, -0.0]], dtype)
    b = np.array([0.0, -0.0] if axis == 0 else [0.0, -0.0, 1.5, 1.0], dtype)
    z_ref, y_ref = epilogue.bias_act_reference(p.copy(), b, "relu", axis)
    with kernels.using("numba"):
        z, y = epilogue.bias_act(p.copy(), b, "relu", axis)
    _bits_equal(y, y_ref)
    assert z is y  # relu's gradient reads [y > 0], the same as [z > 0]
    np.testing.assert_array_equal(z > 0, z_ref > 0)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 3, 1, 1)])  # size-1 axes: strides too
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_is_bitwise_the_reference_in_any_shared_layout(dtype, shape):
    rng = np.random.default_rng(3)
    z = rng.standard_normal(shape).astype(dtype)
    z.flat[:3] = [0.0, -0.0, np.nan]
    dy = rng.standard_normal(z.shape).astype(dtype)
    dy.flat[3] = np.nan
    layouts = [
        lambda a: a,
        lambda a: np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
    ]
    for lz in layouts:
        for ld in layouts:
            zz, dd = lz(z), ld(dy)
            with kernels.using("numba"):
                dz = epilogue.relu_grad(zz, dd)
            _bits_equal(dz, epilogue.relu_grad_reference(zz, dd))
    sliced = z[:, :, ::2]  # not one dense block: the reference runs
    with kernels.using("numba"):
        _bits_equal(
            epilogue.relu_grad(sliced, dy[:, :, ::2]),
            epilogue.relu_grad_reference(sliced, dy[:, :, ::2]),
        )


def _layouts(shape, dtype, rng):
    """One (N, C, P) array's values in each layout the layer hands the kernels."""
    x = rng.standard_normal(shape).astype(dtype)
    N, C, P = shape
    channels_first = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    wide = np.zeros((N, C, 2 * P), dtype)
    wide[:, :, ::2] = x  # not one dense block
    return [x, channels_first, wide[:, :, ::2]]


@pytest.mark.parametrize("shape", [(2, 2, 1), (3, 2, 5), (1, 3, 4), (4, 1, 1), (2, 3, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_passes_are_the_reference_in_bits_and_layout(dtype, shape):
    """y and dx laid out like centred on both backends, whatever dy's layout: the conv before
    reads dx with BLAS, whose sums follow the layout (dx laid out like dy on one backend and like
    centred on the other once made a residual's input gradient differ by an ulp)."""
    rng = np.random.default_rng(sum(shape))
    a, k1, k2, beta = rng.standard_normal((4, shape[1])).astype(dtype)
    for centred in _layouts(shape, dtype, rng):
        y_ref = batchnorm.scale_shift_reference(centred, a, beta)
        with kernels.using("numba"):
            y = batchnorm.scale_shift(centred, a, beta)
        _bits_equal(y, y_ref)
        assert y.strides == y_ref.strides == np.empty_like(centred).strides
        for dy in _layouts(shape, dtype, rng):
            dx_ref = batchnorm.input_grad_reference(dy, centred, a, k1, k2)
            with kernels.using("numba"):
                dx = batchnorm.input_grad(dy, centred, a, k1, k2)
            _bits_equal(dx, dx_ref)
            assert dx.strides == dx_ref.strides == np.empty_like(centred).strides


# ---------------------------------------------------------------- whole training, both backends


def _train_digest(backend: str, activation: str) -> str:
    rng = np.random.default_rng(0)
    X = rng.random((150, 1, 12, 12), dtype=np.float32)
    y = (X[:, 0, :6].mean(axis=(1, 2)) > X[:, 0, 6:].mean(axis=(1, 2))).astype(np.int64)
    net = fran.network(
        [
            fran.conv2d(k=3, channels=4, activation=activation),
            fran.maxpooling(k=2),
            fran.flatten(),
            fran.dense(n_out=8, activation="relu"),
            fran.dense(n_out=2),
            fran.softmax(),
        ],
        0,
        0,
    )
    with kernels.using(backend):
        model = fran.init_weights(net, 12, 12)
        for _ in range(2):
            model = fran.train_nn(model, X, y, batch_size=32)
    return hashlib.sha256(b"".join(a.tobytes() for a in tree_leaves(model.params))).hexdigest()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_two_epochs_train_to_the_same_bits_on_both_backends(activation):
    assert _train_digest("numba", activation) == _train_digest("numpy", activation)


# ---------------------------------------------------------------- the switch and its costs


def test_import_fran_does_not_import_numba_and_the_first_kernel_does():
    out = run_python(
        """
        import json, sys
        import numpy as np
        import fran
        before = "numba" in sys.modules
        fran.apply(fran.maxpooling(2), {}, np.ones((1, 1, 4, 4), np.float32))
        print(json.dumps({"before": before, "after": "numba" in sys.modules,
                          "backend": fran.kernels.backend()}))
        """
    )
    assert out == {"before": False, "after": True, "backend": "numba"}


def test_fran_kernels_numpy_never_imports_numba(monkeypatch):
    monkeypatch.setenv("FRAN_KERNELS", "numpy")
    out = run_python(
        """
        import json, sys
        import numpy as np
        import fran
        fran.apply(fran.maxpooling(2), {}, np.ones((1, 1, 4, 4), np.float32))
        print(json.dumps({"numba": "numba" in sys.modules, "backend": fran.kernels.backend()}))
        """
    )
    assert out == {"numba": False, "backend": "numpy"}


def test_without_numba_the_numpy_kernels_run_after_one_warning(monkeypatch):
    monkeypatch.delenv("FRAN_KERNELS", raising=False)
    out = run_python(
        """
        import json, sys, warnings
        sys.modules["numba"] = None  # as if not installed: `import numba` raises ImportError
        import numpy as np
        import fran
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                fran.apply(fran.maxpooling(2), {}, np.ones((1, 1, 4, 4), np.float32))
        print(json.dumps({"backend": fran.kernels.backend(),
                          "warnings": [str(w.message) for w in caught]}))
        """
    )
    assert out["backend"] == "numpy"
    assert len(out["warnings"]) == 1 and "Numba does not import" in out["warnings"][0]


def test_fran_kernels_numba_without_numba_and_a_bad_value_raise(monkeypatch):
    monkeypatch.setattr(kernels, "_backend", None)
    monkeypatch.setenv("FRAN_KERNELS", "cuda")
    with pytest.raises(ValueError, match="FRAN_KERNELS: expected one of numba, numpy, got 'cuda'"):
        kernels.backend()
    monkeypatch.setenv("FRAN_KERNELS", "numba")
    monkeypatch.setitem(__import__("sys").modules, "numba", None)
    with pytest.raises(ImportError, match="FRAN_KERNELS=numba, but Numba does not import"):
        kernels.backend()
    with pytest.raises(ValueError, match="fran.kernels.using: expected one of"):
        kernels.using("cuda").__enter__()


def test_a_kernel_that_cannot_be_cached_is_compiled_uncached():
    namespace: dict = {}
    exec("def twice(a):\n    return 2 * a\n", namespace)  # no source file: no cache locator
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(namespace["twice"])
    assert kernels.jit(namespace["twice"])(21) == 42
