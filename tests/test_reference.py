"""conv2d, conv2d_transpose and maxpooling against the obvious loops of tests/helpers/reference.py.

The finite-difference checks compare a layer's vjp with its own forward, so a kernel that is
wrong the same way in both (a flipped filter: a true convolution instead of torch's
cross-correlation) passes them. These loops are written from the definitions instead, and need
no PyTorch. Small random cases: square and non-square, strides 1-4, padding up to beyond k,
one to four channels; the loops' backward is checked once against their own finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import reference
from hypothesis import event, given
from hypothesis import strategies as st

import fran
from fran.layers import _winograd

seeds = st.integers(0, 2**32 - 1)
TOL = 1e-10


def close(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL * scale, err_msg=what)


@st.composite
def image(draw, lo: int):
    """(H, W), both at least lo: square half the time."""
    h = draw(st.integers(max(1, lo), max(1, lo) + 5))
    if draw(st.booleans()):
        event("square input")
        return h, h
    event("non-square input")
    return h, h + draw(st.sampled_from([-1, 1])) * draw(st.integers(1, 4)) if h > max(
        1, lo
    ) + 3 else h + draw(st.integers(1, 4))


def run_layer(spec, params, x, rng):
    y, pullback = fran.vjp(spec, params, x)
    close(fran.apply(spec, params, x), y, f"{spec!r} apply vs vjp")
    dy = rng.standard_normal(y.shape)
    grads, dx = pullback(dy)
    return y, dy, grads, dx


@given(
    k=st.integers(1, 4),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    o=st.integers(1, 4),
    data=st.data(),
    seed=seeds,
)
def test_conv2d_matches_the_loops(k, stride, padding, n, c, o, data, seed):
    h, w = data.draw(image(k - 2 * padding), label="H, W")
    event("output side (stride 1, O < C)" if stride == 1 and o < c else "im2col")
    rng = np.random.default_rng(seed)
    spec = fran.conv2d(k, o, stride=stride, padding=padding)
    params = {"w": rng.standard_normal((o, c, k, k)), "b": rng.standard_normal(o)}
    x = rng.standard_normal((n, c, h, w))
    y, dy, grads, dx = run_layer(spec, params, x, rng)
    close(y, reference.conv2d(x, params["w"], params["b"], stride, padding), f"{spec!r} forward")
    rdx, rdw, rdb = reference.conv2d_backward(x, params["w"], dy, stride, padding)
    close(dx, rdx, f"{spec!r} dx")
    close(grads["w"], rdw, f"{spec!r} dw")
    close(grads["b"], rdb, f"{spec!r} db")


# 3x3 stride-1 layers with the channels and outputs that take Winograd's F(2x2, 3x3) tiles
# (fran.layers._winograd.pays): odd and even output sizes, padding 0 to 2.
WINOGRAD_CONV = [
    # n, c, o, padding, H, W
    (1, 32, 32, 0, 10, 10),
    (2, 32, 33, 1, 11, 12),
    (1, 33, 40, 2, 6, 9),
    (2, 34, 34, 0, 13, 10),
]


@pytest.mark.parametrize(("n", "c", "o", "padding", "h", "w"), WINOGRAD_CONV)
def test_winograd_conv2d_matches_the_loops(n, c, o, padding, h, w):
    rng = np.random.default_rng([n, c, o, padding, h, w])
    spec = fran.conv2d(3, o, padding=padding)
    assert _winograd.pays(c, o, h + 2 * padding - 2, w + 2 * padding - 2)
    params = {"w": rng.standard_normal((o, c, 3, 3)), "b": rng.standard_normal(o)}
    x = rng.standard_normal((n, c, h, w))
    y, dy, grads, dx = run_layer(spec, params, x, rng)
    close(y, reference.conv2d(x, params["w"], params["b"], 1, padding), f"{spec!r} forward")
    rdx, rdw, rdb = reference.conv2d_backward(x, params["w"], dy, 1, padding)
    close(dx, rdx, f"{spec!r} dx")
    close(grads["w"], rdw, f"{spec!r} dw")
    close(grads["b"], rdb, f"{spec!r} db")


@given(
    k=st.integers(1, 4),
    stride=st.integers(1, 5),
    padding=st.integers(0, 5),
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    o=st.integers(1, 4),
    data=st.data(),
    seed=seeds,
)
def test_conv2d_transpose_matches_the_loops(k, stride, padding, n, c, o, data, seed):
    # the output (H - 1) s - 2p + k must be at least 1
    lo = -(-(2 * padding + 1 - k) // stride) + 1
    h, w = data.draw(image(lo), label="H, W")
    if padding >= k:
        event("padding >= k")
    if stride >= 4:
        event("stride >= 4")
    rng = np.random.default_rng(seed)
    spec = fran.conv2d_transpose(k, o, stride=stride, padding=padding)
    params = {"w": rng.standard_normal((c, o, k, k)), "b": rng.standard_normal(o)}
    x = rng.standard_normal((n, c, h, w))
    y, dy, grads, dx = run_layer(spec, params, x, rng)
    want = reference.conv2d_transpose(x, params["w"], params["b"], stride, padding)
    close(y, want, f"{spec!r} forward")
    rdx, rdw, rdb = reference.conv2d_transpose_backward(x, params["w"], dy, stride, padding)
    close(dx, rdx, f"{spec!r} dx")
    close(grads["w"], rdw, f"{spec!r} dw")
    close(grads["b"], rdb, f"{spec!r} db")


@given(
    k=st.integers(1, 4),
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    data=st.data(),
    seed=seeds,
)
def test_maxpooling_matches_the_loops(k, n, c, data, seed):
    overlap = st.integers(1, k - 1) if k > 1 else st.just(1)
    stride = data.draw(st.one_of(st.none(), overlap, st.integers(1, 4)), label="stride")
    h, w = data.draw(image(k), label="H, W")
    s = k if stride is None else stride
    event("overlapping windows" if s < k else "disjoint windows")
    rng = np.random.default_rng(seed)
    spec = fran.maxpooling(k, stride=stride)
    x = rng.standard_normal((n, c, h, w))
    y, dy, _, dx = run_layer(spec, {}, x, rng)
    ry, rdx = reference.maxpooling(x, k, s, dy)
    close(y, ry, f"{spec!r} forward")
    close(dx, rdx, f"{spec!r} dx")


# ---------------------------------------------------------------- the loops themselves


def test_the_conv_loops_are_cross_correlation():
    """A hand example: the filter is not flipped (torch's convention)."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])  # picks each window's top-left
    z = reference.conv2d(x, w, np.zeros(1), 1, 0)
    np.testing.assert_array_equal(z[0, 0], [[0.0, 1.0], [3.0, 4.0]])
    full = reference.conv2d_transpose(np.ones((1, 1, 1, 1)), w, np.zeros(1), 1, 0)
    np.testing.assert_array_equal(full[0, 0], w[0, 0])  # one pixel scatters the filter as is


def _fd_check(forward, backward, args, rng, eps=1e-6):
    """The loops' hand-derived backward against central differences of their own forward."""
    z = forward(*args)
    dz = rng.standard_normal(z.shape)
    grads = backward(dz)
    moves = [rng.standard_normal(a.shape) for a in args[: len(grads)]]

    def f(t):
        moved = [a + t * v for a, v in zip(args, moves, strict=False)] + list(args[len(grads) :])
        return np.vdot(dz, forward(*moved))

    analytic = sum(np.vdot(g, v) for g, v in zip(grads, moves, strict=True))
    assert analytic == pytest.approx((f(eps) - f(-eps)) / (2 * eps), rel=1e-6)


@pytest.mark.parametrize(("k", "stride", "padding"), [(3, 1, 0), (2, 2, 1), (3, 3, 4), (1, 2, 0)])
def test_the_loops_backward_matches_their_finite_differences(k, stride, padding):
    rng = np.random.default_rng(k + stride + padding)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((2, 3, k, k))
    b = rng.standard_normal(2)
    if k + 2 * padding <= 5 + 2 * padding and 6 + 2 * padding >= k:
        _fd_check(
            lambda x, w, b: reference.conv2d(x, w, b, stride, padding),
            lambda dz: (*reference.conv2d_backward(x, w, dz, stride, padding),),
            (x, w, b),
            rng,
        )
    wt = rng.standard_normal((3, 2, k, k))
    _fd_check(
        lambda x, w, b: reference.conv2d_transpose(x, w, b, stride, padding),
        lambda dz: (*reference.conv2d_transpose_backward(x, wt, dz, stride, padding),),
        (x, wt, b),
        rng,
    )
