"""The products every convolution is built from, against the plain NumPy product.

matmul_wide / matmul_wide_t cut a wide product into column blocks (LeNet-5's first conv at batch
64 in float32 runs 9 of them), but the layer tests' small inputs never reach a split. Here the
block size is shrunk (the module's _block_columns monkeypatched) so that 1 to 7 blocks, the last
one ragged or not, are checked in float32 and float64, alone and inside each conv path.

The kernels are imported through KERNELS and GEMM only, so a renamed module changes one line.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest

import fran

KERNELS = importlib.import_module("fran.layers._conv")
GEMM = importlib.import_module("fran.layers._gemm")

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


@contextmanager
def blocks_of(columns: int):
    """Every wide product in blocks of `columns` columns, whatever its size and dtype."""
    with mock.patch.object(GEMM, "_block_columns", lambda m, k, itemsize: columns):
        yield


def plain(a, b):
    """The float64 product of the (possibly float32) operands: the reference."""
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64)


def assert_near(actual, expected, dtype, what=""):
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, wanted {dtype}"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(
        actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what
    )


# (block size, columns) pairs: 1 block, exactly 2, ragged 3, exactly 5, ragged 7
SPLITS = [(8, 8), (8, 16), (8, 20), (4, 20), (3, 19)]


def test_the_splits_give_one_to_seven_blocks():
    assert sorted(-(-n // b) for b, n in SPLITS) == [1, 2, 3, 5, 7]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("block", "n"), SPLITS)
def test_matmul_wide_is_the_plain_product(block, n, dtype):
    rng = np.random.default_rng(n * block)
    a = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((7, n)).astype(dtype)
    with blocks_of(block):
        got = GEMM.matmul_wide(a, b)
    assert_near(got, plain(a, b), dtype, f"matmul_wide in blocks of {block}, {n} columns")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("block", "n"), SPLITS)
def test_matmul_wide_t_is_the_plain_product(block, n, dtype):
    rng = np.random.default_rng(n * block + 1)
    a = rng.standard_normal((4, n)).astype(dtype)
    b = rng.standard_normal((6, n)).astype(dtype)
    with blocks_of(block):
        got = GEMM.matmul_wide_t(a, b)
    assert_near(got, plain(a, b.T), dtype, f"matmul_wide_t in blocks of {block}, {n} columns")


@pytest.mark.parametrize("dtype", DTYPES)
def test_real_block_sizes_split_real_products(dtype):
    """Without the patch: LeNet-5's first conv at batch 64 splits, a big matrix does not."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 25)).astype(dtype)
    b = rng.standard_normal((25, 64 * 24 * 24)).astype(dtype)
    block = GEMM._block_columns(6, 25, b.itemsize)
    assert block is not None and b.shape[1] // block >= 5
    assert_near(GEMM.matmul_wide(a, b), plain(a, b), dtype, "LeNet-5 conv1 forward")
    dz = rng.standard_normal((6, b.shape[1])).astype(dtype)
    assert_near(GEMM.matmul_wide_t(dz, b), plain(dz, b.T), dtype, "LeNet-5 conv1 dw")
    assert GEMM._block_columns(64, 288, 4) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [1000, 50, 17])
@pytest.mark.parametrize(("k", "stride"), [(3, 1), (2, 1), (3, 2)])
def test_conv_input_gradient_is_col2im_of_the_product(k, stride, block, dtype):
    rng = np.random.default_rng(k + block)
    N, C, O, OH, OW = 2, 3, 4, 5, 6
    H, W = (OH - 1) * stride + k, (OW - 1) * stride + k
    w2 = rng.standard_normal((O, C * k * k)).astype(dtype)
    dz = rng.standard_normal((O, N * OH * OW)).astype(dtype)
    want = KERNELS.col2im(plain(w2.T, dz), C, N, OH, OW, k, stride, H, W)
    with blocks_of(block):
        if stride == 1:
            got = KERNELS.conv_input_grad_stride1(w2, dz, N, OH, OW, k)
        else:
            got = KERNELS.col2im(GEMM.matmul_wide(w2.T, dz), C, N, OH, OW, k, stride, H, W)
    assert_near(got, want, dtype, "conv input gradient")


@pytest.mark.parametrize(("k", "stride", "padding"), [(3, 1, 0), (2, 2, 1), (3, 2, 2), (1, 3, 0)])
def test_col2im_is_the_adjoint_of_im2col(k, stride, padding):
    rng = np.random.default_rng(k * 10 + stride)
    N, C, H, W = 2, 3, 7, 6
    x = rng.standard_normal((N, C, H, W))
    cols = KERNELS.im2col(x, k, stride, padding)
    OH, OW = KERNELS.conv_out(H, k, stride, padding), KERNELS.conv_out(W, k, stride, padding)
    assert cols.shape == (C * k * k, N * OH * OW)
    g = rng.standard_normal(cols.shape)
    back = KERNELS.col2im(g, C, N, OH, OW, k, stride, H + 2 * padding, W + 2 * padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    np.testing.assert_allclose(
        np.vdot(cols, g), np.vdot(xp.transpose(1, 0, 2, 3), back), rtol=1e-12
    )


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shifted_spread_is_the_adjoint_of_shifted_sum(k):
    rng = np.random.default_rng(k)
    O, L, Wp = 3, 40, 7
    P = rng.standard_normal((k * k, O, L))
    z = KERNELS.shifted_sum(P, k, Wp)
    want = sum(
        np.pad(P[ij, :, (ij // k) * Wp + ij % k :], ((0, 0), (0, (ij // k) * Wp + ij % k)))
        for ij in range(k * k)
    )
    np.testing.assert_allclose(z, want, rtol=1e-12)
    dz = rng.standard_normal((O, L))
    D = KERNELS.shifted_spread(dz, k, Wp).reshape(k * k, O, L)
    np.testing.assert_allclose(np.vdot(z, dz), np.vdot(P, D), rtol=1e-12)


# ---------------------------------------------------------------- the blocks inside the layers

LAYER_CASES = [  # spec, input shape: the im2col path and the output-side path (stride 1, O < C)
    (fran.conv2d(3, 4), (2, 9, 8)),
    (fran.conv2d(2, 3, stride=2, padding=1), (2, 7, 9)),
    (fran.conv2d(3, 2, padding=1), (5, 6, 7)),
    (fran.conv2d(1, 1), (3, 5, 5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [7, 23, 64])
@pytest.mark.parametrize(("spec", "shape"), LAYER_CASES, ids=repr)
def test_conv2d_in_small_blocks_equals_conv2d_whole(spec, shape, block, dtype):
    """Forward, dparams and dx with every product cut in many blocks, against no blocks at all."""
    rng = np.random.default_rng(block)
    params = fran.init(spec, shape, 1, dtype=dtype)
    x = rng.standard_normal((3, *shape)).astype(dtype)

    def run():
        y, pullback = fran.vjp(spec, params, x)
        dy = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
        grads, dx = pullback(dy)
        return y, grads, dx

    with mock.patch.object(GEMM, "_block_columns", lambda m, k, itemsize: None):
        y0, g0, dx0 = run()
    with blocks_of(block):
        y1, g1, dx1 = run()
    n_cols = 3 * np.prod(fran.output_shape(spec, shape)[1:])
    assert n_cols > 2 * block or block == 64
    assert_near(y1, y0.astype(np.float64), dtype, "forward")
    assert_near(dx1, dx0.astype(np.float64), dtype, "dx")
    for name in g0:
        assert_near(g1[name], g0[name].astype(np.float64), dtype, f"d/d{name}")


# ---------------------------------------------------------------- the layout helpers


@pytest.mark.parametrize("p", [0, 1, 3])
def test_padded_rows_is_the_padded_input_channels_first(p):
    x = np.random.default_rng(p).standard_normal((2, 3, 4, 5))
    want = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_array_equal(KERNELS.padded_rows(x, p), want)


def test_in_corner_puts_dz_top_left_of_zeros():
    dz = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3 * 2 * 2)  # O=2, N=3, 2 x 2
    got = KERNELS.in_corner(dz, 3, 2, 2, 4, 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(got[:, :, :2, :2], dz.reshape(2, 3, 2, 2))
    assert not got[:, :, 2:].any() and not got[:, :, :, 2:].any()


def test_channels_first_and_batch_first_are_inverse_layouts():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    m = KERNELS.channels_first(x)
    np.testing.assert_array_equal(m, x.transpose(1, 0, 2, 3).reshape(3, -1))
    np.testing.assert_array_equal(KERNELS.batch_first(m, 2, 4, 5), x)


@pytest.mark.parametrize("axes", [(0, 1, 2, 3), (1, 0, 2, 3), (3, 2, 1, 0)])
def test_layout_helpers_keep_values_and_follow_the_memory_order(axes):
    like = np.zeros([(2, 3, 4, 5)[i] for i in axes])
    like = like.transpose(np.argsort(axes))  # shape (2, 3, 4, 5), memory order `axes`
    order = np.argsort([-s for s in like.strides]).tolist()
    z = KERNELS.zeros_in_layout_of(like, np.float32)
    assert z.shape == like.shape and z.dtype == np.float32 and not z.any()
    assert np.argsort([-s for s in z.strides]).tolist() == order
    a = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    b = KERNELS.in_layout_of(a, like)
    np.testing.assert_array_equal(b, a)
    assert np.argsort([-s for s in b.strides]).tolist() == order
