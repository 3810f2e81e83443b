"""fran.kernels.conv, the implicit-GEMM convolution, against the im2col reference it replaces.

- random shapes (hypothesis): strides, padding, odd sizes, 1x1 and 5x5 kernels, inputs in NCHW
  and channels-first memory and sliced, float32 and float64: the forward, the weight gradient
  and the input gradient bitwise the NumPy path's (the same BLAS calls in the same order), and
  laid out alike;
- the layer takes the path where the rule says, and not where NumPy would call gemv;
- by-hand values of a small case (a plain loop), so a bug shared by both paths is caught too;
- fixed runs of blocks (fran's threads in a whole-batch region) give the same bits;
- the finite-difference check of conv2d on both backends;
- a second process loads the compiled kernels from the cache (no compile).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fran
from fran import engine, kernels, parallel
from fran.kernels import conv as conv_kernels
from fran.layers import _conv, _gemm
from fran.testing import check_layer

numba = pytest.importorskip("numba")
pytestmark = pytest.mark.skipif(
    not conv_kernels._bind(), reason="NumPy's bundled OpenBLAS is not found"
)
DTYPES = [np.float32, np.float64]


@contextmanager
def everywhere():
    """The implicit GEMM for every shape its kernels take (the speed rule set aside)."""
    with (
        mock.patch.object(_conv, "IMPLICIT_KERNELS", range(1, 100)),
        mock.patch.object(_conv, "IMPLICIT_MIN_OUTPUTS", 0),
        mock.patch.object(_conv, "IMPLICIT_MIN_PIXELS", 0),
    ):
        yield


def _same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.strides == b.strides, f"{what}: strides {a.strides} != {b.strides}"
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b), err_msg=what)
    np.testing.assert_array_equal(a, b, err_msg=what)


def _layout(x, how):
    if how == "channels_first":  # as conv2d hands its output on
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    if how == "sliced":
        wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _products(backend, x, w, s, p, dz_seed):
    with kernels.using(backend):
        tape = _conv.lay_out(x, w, s, p)
        z = _conv.correlate(tape)
        dz = np.random.default_rng(dz_seed).standard_normal(z.shape).astype(z.dtype)
        dw, dx = _conv.correlate_vjp(tape, dz)
        _, none = _conv.correlate_vjp(tape, dz, input_grad=False)
    assert none is None
    return tape, [z, dw, dx]


shapes = st.tuples(
    st.integers(1, 5),  # N
    st.integers(1, 7),  # C
    st.integers(2, 9),  # O
    st.integers(1, 14),  # H
    st.integers(1, 14),  # W
    st.sampled_from([1, 2, 3, 5]),  # k
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(
    shape=shapes,
    layout=st.sampled_from(["nchw", "channels_first", "sliced"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_implicit_gemm_is_bitwise_the_im2col_path(dtype, shape, layout, seed):
    N, C, O, H, W, k, s, p = shape
    if H + 2 * p < k or W + 2 * p < k:
        return
    rng = np.random.default_rng(seed)
    x = _layout(rng.standard_normal((N, C, H, W)).astype(dtype), layout)
    w = rng.standard_normal((O, C, k, k)).astype(dtype)
    ref_tape, ref = _products("numpy", x, w, s, p, seed)
    with everywhere():
        tape, fast = _products("numba", x, w, s, p, seed)
    n = N * ref_tape.out[0] * ref_tape.out[1]
    if ref_tape.cols is not None:  # the im2col path: the rule decides
        assert (tape.x is not None) == _gemm.implicit_fits(O, C * k * k, n, x.itemsize)
    for name, a, b in zip(("z", "dw", "dx"), fast, ref, strict=True):
        _same(a, b, f"{shape} {layout} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, H, s, p", [(130, 28, 1, 1), (7, 31, 1, 0), (60, 17, 2, 1)])
def test_many_blocks_and_fixed_runs_keep_the_bits(dtype, N, H, s, p, monkeypatch):
    """Several column blocks (partial products summed, shifts across block edges), and the
    same products cut into runs for threads in a whole-batch region."""
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, 3, H, H)).astype(dtype)
    w = rng.standard_normal((16, 3, 3, 3)).astype(dtype)
    _, ref = _products("numpy", x, w, s, p, 1)
    with everywhere():
        tape, fast = _products("numba", x, w, s, p, 1)
    assert tape.x is not None and tape.cols is None
    z = ref[0]
    assert _gemm.implicit_blocks(16, 27, z.shape[1], x.itemsize)[1] > 2
    for a, b in zip(fast, ref, strict=True):
        _same(a, b, "one run")
    monkeypatch.setattr(_gemm, "PIECE_MACS", 1)  # every product cut into PIECES runs
    for threads in (1, 2, 3):
        monkeypatch.setenv("FRAN_NUM_THREADS", str(threads))
        with parallel.whole_batch_region(), everywhere():
            assert len(_gemm._runs(20, 10)) == _gemm.PIECES
            _, cut = _products("numba", x, w, s, p, 1)
        for a, b in zip(cut, ref, strict=True):
            _same(a, b, f"runs on {threads} threads")


def test_the_speed_rule_takes_the_resnets_16_channel_layers_not_lenets():
    def takes(C, H, O, k, s, p, N=8):
        with kernels.using("numba"):
            x = np.ones((N, C, H, H), np.float32)
            return _conv.lay_out(x, np.ones((O, C, k, k), np.float32), s, p).x is not None

    assert takes(16, 28, 16, 3, 1, 1) and takes(1, 28, 16, 3, 1, 1)  # ResNet block 1, stem
    assert takes(1, 28, 32, 3, 1, 0)  # the first layer of the Fashion-MNIST CNN and the peers
    assert not takes(6, 12, 16, 3, 1, 0)  # LeNet-5's second layer: 10 x 10 maps
    assert not takes(1, 28, 6, 5, 1, 0)  # LeNet-5's first: 5 x 5, 6 channels
    assert not takes(16, 28, 32, 1, 2, 0)  # the ResNet's 1 x 1 shortcut


def test_the_rule_leaves_gemv_shapes_and_large_matrices_to_the_reference():
    x = np.ones((2, 3, 6, 6), np.float32)
    with kernels.using("numba"), everywhere():
        assert _conv.lay_out(x, np.ones((4, 3, 3, 3), np.float32), 1, 0).x is not None
        assert _conv.lay_out(x, np.ones((1, 3, 3, 3), np.float32), 1, 0).x is None  # O = 1
        assert _conv.lay_out(x[:1, :1], np.ones((4, 1, 1, 1), np.float32), 1, 0).x is None
        assert _conv.lay_out(x[:1], np.ones((4, 3, 6, 6), np.float32), 1, 0).x is None  # n = 1
        big = np.ones((2, 32, 8, 8), np.float32)  # 64 x 288: a whole product in the reference
        assert _conv.lay_out(big, np.ones((64, 32, 3, 3), np.float32), 2, 0).x is None
        assert (
            _conv.lay_out(x.astype(np.float16), np.ones((4, 3, 3, 3), np.float16), 1, 0).x is None
        )
    with kernels.using("numpy"):
        assert _conv.lay_out(x, np.ones((4, 3, 3, 3), np.float32), 1, 0).x is None


def _loops(x, w, s, p):
    N, C, H, W = x.shape
    O, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    OH, OW = _conv.conv_out(H, k, s, p), _conv.conv_out(W, k, s, p)
    z = np.zeros((N, O, OH, OW))
    for n, o, r, q in np.ndindex(N, O, OH, OW):
        z[n, o, r, q] = np.sum(w[o] * xp[n, :, s * r : s * r + k, s * q : s * q + k])
    return z


@pytest.mark.parametrize("s, p", [(1, 0), (1, 2), (2, 1), (3, 0)])
def test_implicit_gemm_by_loops(s, p):
    """The forward and both gradients against plain loops (float64): dw and dx through the
    adjoint identity <dz, conv(x, w)> = <dw, w> = <dx, x> for the loops' linear map."""
    rng = np.random.default_rng(s * 10 + p)
    x, w = rng.standard_normal((3, 2, 7, 6)), rng.standard_normal((4, 2, 3, 3))
    z_loops = _loops(x, w, s, p)
    with kernels.using("numba"), everywhere():
        tape = _conv.lay_out(x, w, s, p)
        assert tape.x is not None
        z = tape.as_nchw(_conv.correlate(tape))
        dz = rng.standard_normal(z.shape)
        dw, dx = _conv.correlate_vjp(tape, _conv.channels_first(np.ascontiguousarray(dz)))
    np.testing.assert_allclose(z, z_loops, rtol=1e-12, atol=1e-12)
    for i in range(w.size):  # dw[i] = <dz, conv(x, e_i)>
        e = np.zeros(w.size)
        e[i] = 1
        expected = np.sum(dz * _loops(x, e.reshape(w.shape), s, p))
        np.testing.assert_allclose(dw.ravel()[i], expected, rtol=1e-10, atol=1e-10)
    dx = dx.transpose(1, 0, 2, 3)
    for i in rng.choice(x.size, 12, replace=False):  # dx[i] = <dz, conv(e_i, w)>
        e = np.zeros(x.size)
        e[i] = 1
        expected = np.sum(dz * _loops(e.reshape(x.shape), w, s, p))
        np.testing.assert_allclose(dx.ravel()[i], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(
    "spec, shape",
    [
        (fran.conv2d(k=3, channels=4, padding=1, activation="relu"), (3, 9, 8)),
        (fran.conv2d(k=3, channels=3, stride=2, padding=1, activation="tanh"), (2, 9, 9)),
        (fran.conv2d(k=1, channels=5, stride=2), (3, 7, 7)),
        (fran.conv2d(k=5, channels=2, padding=2), (1, 6, 7)),
    ],
)
def test_finite_differences_of_conv2d_on_both_backends(backend, spec, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *shape))
    params = engine.init(spec, shape, rng, dtype=np.float64)
    with kernels.using(backend), everywhere():
        assert (_conv.lay_out(x, params["w"], spec.stride, spec.padding).x is not None) == (
            backend == "numba"
        )
        check_layer(spec, params, x, rng=1)


def test_a_second_process_loads_the_conv_kernels_from_the_cache(tmp_path):
    code = (
        "import time, numpy as np\n"
        "from fran.layers import _conv\n"
        "x = np.ones((2, 3, 14, 14), np.float32); w = np.ones((16, 3, 3, 3), np.float32)\n"
        "t = time.perf_counter(); tape = _conv.lay_out(x, w, 1, 1); z = _conv.correlate(tape)\n"
        "_conv.correlate_vjp(tape, z)\n"
        "assert tape.x is not None\n"
    )
    root = str(Path(fran.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root, "FRAN_KERNELS": "numba"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DEBUG_CACHE="1")
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    first, second = run(), run()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "data saved" in first.stdout + first.stderr
    out = second.stdout + second.stderr
    assert "data loaded" in out and "data saved" not in out, out[-2000:]
    assert os.listdir(tmp_path)


# ---------------------------------------------------------------- residual add + relu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channels_first", "sliced", "mixed"])
def test_add_relu_is_bitwise_the_reference_in_bits_and_layout(dtype, layout):
    from fran.kernels import epilogue

    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((4, 3, 5, 6)).astype(dtype) for _ in range(2))
    a.ravel()[:4] = [0.0, -0.0, np.nan, -1.0]
    b.ravel()[:4] = [-0.0, -0.0, 1.0, 1.0]  # +0, -0 -> +0 (np.maximum), NaN kept, -1 + 1 = 0
    a = _layout(a, "channels_first" if layout == "mixed" else layout)
    b = _layout(b, layout if layout != "mixed" else "nchw")
    dy = rng.standard_normal(a.shape).astype(dtype)
    ref = epilogue.add_relu_reference(a, b)
    with kernels.using("numba"):
        y = epilogue.add_relu(a, b)
        dz = epilogue.relu_grad(y, dy)
    _same(np.nan_to_num(y), np.nan_to_num(ref), layout)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    _same(dz, epilogue.relu_grad_reference(ref, dy), layout)
    assert not np.signbit(y[~np.isnan(y)]).any()
