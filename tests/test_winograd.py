"""Winograd's F(2x2, 3x3) kernels against im2col, and the rule that sends a conv2d to them.

The kernels are called directly here (the dispatch rule needs many channels, these draws stay
small), with the block of tiles shrunk so that one to many blocks, the last one ragged, are
checked. Then the dispatch: a layer the rule picks really runs through _winograd, and layers it
does not pick never do. The layer-level properties (finite differences, the torch oracle, the
loops of tests/helpers/reference.py) draw Winograd-sized layers of their own.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import fran
from fran.layers import _conv, _winograd

seeds = st.integers(0, 2**32 - 1)


def close(actual, expected, what, rtol):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def both_paths(x, w, b, p, dz, tiles):
    """(z, dw, dx) from im2col (plain) and from Winograd in blocks of `tiles` tiles."""
    old = _conv.lay_out(x, w, 1, p, plain=True)
    want = (_conv.correlate(old, b), *_conv.correlate_vjp(old, dz))
    with mock.patch.object(_winograd, "TILES", tiles):
        new = _winograd.lay_out(x, w, p)
        got = (_winograd.correlate(new, b), *_winograd.correlate_vjp(new, dz))
        dw_alone, no_dx = _winograd.correlate_vjp(new, dz, input_grad=False)
    assert no_dx is None
    np.testing.assert_array_equal(dw_alone, got[1])
    return want, got


def draw_case(data, dtype):
    n, c, o = (data.draw(st.integers(1, 4), label=s) for s in ("N", "C", "O"))
    p = data.draw(st.sampled_from([0, 1, 2]), label="padding")
    h = data.draw(st.integers(3, 15), label="H")
    w_ = data.draw(st.integers(3, 15).filter(lambda v: v != h), label="W")
    if data.draw(st.booleans(), label="square"):
        w_ = h
    event("odd output" if (h + 2 * p) % 2 or (w_ + 2 * p) % 2 else "even output")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    dz = rng.standard_normal((o, n * (h + 2 * p - 2) * (w_ + 2 * p - 2))).astype(dtype)
    tiles = data.draw(st.integers(1, 80), label="tiles per block")
    return x, w, b, p, dz, tiles


@given(data=st.data())
def test_winograd_equals_im2col_in_float64(data):
    x, w, b, p, dz, tiles = draw_case(data, np.float64)
    want, got = both_paths(x, w, b, p, dz, tiles)
    for name, g, e in zip(("forward", "dw", "dx"), got, want, strict=True):
        assert g.dtype == np.float64, f"{name}: dtype {g.dtype}"
        close(g, e, name, 1e-10)


@given(data=st.data())
def test_winograd_equals_im2col_in_float32(data):
    """float32 in, float32 out, within float32 rounding of the float64 im2col result."""
    x, w, b, p, dz, tiles = draw_case(data, np.float32)
    f64 = [a.astype(np.float64) for a in (x, w, b, dz)]
    want, _ = both_paths(*f64[:3], p, f64[3], tiles)
    _, got = both_paths(x, w, b, p, dz, tiles)
    for name, g, e in zip(("forward", "dw", "dx"), got, want, strict=True):
        assert g.dtype == np.float32, f"{name}: dtype {g.dtype}"
        close(g, e, name, 2e-5)


def test_winograd_without_a_bias():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    want = _conv.correlate(_conv.lay_out(x, w, 1, 1, plain=True))
    close(_winograd.correlate(_winograd.lay_out(x, w, 1)), want, "forward", 1e-12)


# ---------------------------------------------------------------- the dispatch


def runs_winograd(spec, shape, n=2, dtype=np.float64) -> bool:
    """Whether conv2d's apply, vjp and pullback on this layer go through _winograd (all or none)."""
    params = fran.init(spec, shape, 0, dtype=dtype)
    x = np.random.default_rng(0).standard_normal((n, *shape)).astype(dtype)
    spies = {
        name: mock.patch.object(_winograd, name, wraps=getattr(_winograd, name))
        for name in ("lay_out", "correlate", "correlate_vjp")
    }
    with spies["lay_out"] as lay, spies["correlate"] as corr, spies["correlate_vjp"] as back:
        fran.apply(spec, params, x)
        y, pullback = fran.vjp(spec, params, x)
        pullback(np.ones_like(y))
        calls = {"lay_out": lay.call_count, "correlate": corr.call_count, "vjp": back.call_count}
    assert calls in (
        {"lay_out": 0, "correlate": 0, "vjp": 0},
        {"lay_out": 2, "correlate": 2, "vjp": 1},
    )
    return calls["vjp"] == 1


LAYERS = _winograd.MIN_CHANNELS  # the smallest channel count the rule takes


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (fran.conv2d(3, LAYERS), (LAYERS, 10, 10)),  # 8 x 8 outputs: the smallest it takes
        (fran.conv2d(3, 2 * LAYERS, activation="relu"), (LAYERS, 26, 26)),  # PyTorch's MNIST net
        (fran.conv2d(3, LAYERS + 3, padding=1, activation="tanh"), (LAYERS + 1, 11, 12)),
        (fran.conv2d(3, LAYERS), (LAYERS, 23, 23)),  # odd 21 x 21: 22 x 22 computed, 9.8% more
    ],
    ids=repr,
)
def test_the_rule_sends_many_channel_3x3_stride_1_convs_to_winograd(spec, shape):
    assert runs_winograd(spec, shape)
    assert runs_winograd(spec, shape, dtype=np.float32)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (fran.conv2d(3, 32), (1, 28, 28)),  # one input channel (a first layer)
        (fran.conv2d(3, 16, padding=1), (16, 28, 28)),  # too few channels to pay
        (fran.conv2d(3, LAYERS), (2 * LAYERS, 10, 10)),  # O < C: the output side is faster
        (fran.conv2d(3, LAYERS), (LAYERS, 9, 9)),  # 7 x 7 outputs: too few
        (fran.conv2d(3, 2 * LAYERS), (LAYERS, 13, 13)),  # odd 11 x 11: 19% more pixels computed
        (fran.conv2d(3, LAYERS, stride=2), (LAYERS, 21, 21)),  # strided
        (fran.conv2d(5, LAYERS, padding=2), (LAYERS, 10, 10)),  # not 3 x 3
    ],
    ids=repr,
)
def test_the_rule_leaves_other_convs_to_the_old_kernels(spec, shape):
    assert not runs_winograd(spec, shape)


def test_the_switch_turns_winograd_off():
    spec, shape = fran.conv2d(3, LAYERS), (LAYERS, 10, 10)
    with mock.patch.object(_winograd, "ENABLED", False):
        assert not runs_winograd(spec, shape)


def test_conv2d_transpose_never_takes_winograd():
    """Its backward lays out dz with plain=True (im2col only), whatever the channels."""
    spec, shape = fran.conv2d_transpose(3, LAYERS), (LAYERS, 8, 8)
    params = fran.init(spec, shape, 0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    with mock.patch.object(_winograd, "lay_out", side_effect=AssertionError("Winograd")):
        y, pullback = fran.vjp(spec, params, x)
        pullback(np.ones_like(y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_winograd_layer_equals_the_old_kernels(dtype):
    """The whole layer (activation, bias, NCHW views, many blocks of tiles) either way."""
    spec, shape = fran.conv2d(3, LAYERS + 8, padding=1, activation="tanh"), (LAYERS, 13, 12)
    params = fran.init(spec, shape, 0, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((5, *shape)).astype(dtype)

    def run():
        y, pullback = fran.vjp(spec, params, x)
        grads, dx = pullback(np.random.default_rng(2).standard_normal(y.shape).astype(dtype))
        return [fran.apply(spec, params, x), y, dx, grads["w"], grads["b"]]

    with mock.patch.object(_winograd, "TILES", 50):  # 42 tiles per image: one image per block
        assert runs_winograd(spec, shape)
        new = run()
    with mock.patch.object(_winograd, "ENABLED", False):
        old = run()
    for name, g, e in zip(("apply", "vjp", "dx", "dw", "db"), new, old, strict=True):
        assert g.dtype == dtype and g.shape == e.shape, name
        close(g, e.astype(np.float64), name, 2e-5 if dtype == np.float32 else 1e-10)
