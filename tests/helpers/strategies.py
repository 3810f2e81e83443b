"""Hypothesis strategies: for every registered layer, a spec, a matching input and params.

`cases(name)` draws a `Case(spec, shape, x, params)` in float64. Hypothesis draws the structure
(hyperparameters and shapes that respect the spec: H, W >= k, strides > 1, padding > 0, ragged
edges, overlapping pooling); the values come from a NumPy generator seeded by a drawn integer.
Values are kept away from kinks by construction, never with `assume`: inputs are re-drawn (from
the same seeded generator, so deterministically) until every relu pre-activation is at least
KINK_MARGIN from 0 and every pooling window's maximum beats its runner-up by KINK_MARGIN;
maxpooling on its own gets distinct, evenly spaced inputs (a scaled permutation of arange).

A layer this module does not know (a plugin) falls back to `generic_cases`, which builds its spec
class with no arguments on a (2, 3, 6, 6) image or a (2, 5) vector batch. Plugins with required
hyperparameters should test themselves with their own strategy and `fran.testing.check_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from fran import engine, registry
from fran.layers import (
    ACTIVATIONS,
    _winograd,
    activation,
    attention,
    batchnorm,
    conv2d,
    conv2d_transpose,
    dense,
    dropout,
    embedding,
    flatten,
    layernorm,
    lstm,
    maxpooling,
    position_embedding,
    residual,
    rnn,
    softmax,
)
from fran.layers._conv import conv_out
from fran.tree import tree_map

KINK_MARGIN = 1e-3
ACTS = tuple(sorted(ACTIVATIONS))
acts = st.sampled_from(ACTS)
seeds = st.integers(0, 2**32 - 1)


class Case(NamedTuple):
    spec: Any
    shape: tuple  # per-sample input shape, no batch axis
    x: np.ndarray  # float64 batch (N, *shape)
    params: Any  # float64 params
    state: Any = None  # float64 layer state (running statistics), None for fran.init_state's


# ---------------------------------------------------------------- distance to the nearest kink


def _pool_gap(spec: maxpooling, x: np.ndarray) -> float:
    """Smallest gap between a window's maximum and its runner-up, exact ties skipped.

    Exact ties only arise structurally (relu's zeros, a padded border's constant act(b)); such
    values move together or not at all under a perturbation, so they do not mislead the check.
    """
    _, _, H, W = x.shape
    OH, OW = conv_out(H, spec.k, spec.s), conv_out(W, spec.k, spec.s)
    if spec.k == 1:
        return np.inf
    win = sliding_window_view(x, (spec.k, spec.k), axis=(2, 3))[:, :, :: spec.s, :: spec.s]
    top2 = np.sort(win[:, :, :OH, :OW].reshape(*win.shape[:2], OH, OW, -1), axis=-1)[..., -2:]
    gap = top2[..., 1] - top2[..., 0]
    gap = gap[gap > 0]
    return float(gap.min()) if gap.size else np.inf


def _serial_margin(layers, params, state, x) -> float:
    margin = np.inf
    for layer, p, layer_state in zip(layers, params, state, strict=True):
        margin = min(margin, kink_margin(layer, p, x, layer_state))
        x = engine.apply(
            layer, p, x, state=layer_state
        )  # inference: batch norm by the given statistics
    return margin


def kink_margin(spec, params, x: np.ndarray, state=None) -> float:
    """How far (params, x) is from a point where the layer (or network) is not differentiable.

    Layers with modes are followed in inference mode; the drawn strategies keep relu out of the
    layers that follow batch norm or dropout, where training mode would move the kinks."""
    if state is None:
        state = engine.init_state(spec, x.shape[1:], np.float64)
    if isinstance(spec, engine.network):
        return _serial_margin(spec.layers, params, state, x)
    if isinstance(spec, residual):
        m = _serial_margin(spec.layers, params["f"], state["f"], x)
        if spec.shortcut is not None:
            m = min(m, _serial_margin(spec.shortcut, params["g"], state["g"], x))
        return m
    if isinstance(spec, activation):
        return float(np.abs(x).min()) if spec.name == "relu" else np.inf
    if isinstance(spec, maxpooling):
        return _pool_gap(spec, x)
    if attrs.has(type(spec)) and getattr(spec, "activation", None) == "relu":
        z = engine.apply(attrs.evolve(spec, activation="identity"), params, x)
        return float(np.abs(z).min())
    return np.inf


# ---------------------------------------------------------------- from structure to values


def _spaced(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Distinct values 0.01 apart, in random order: no two pooling candidates tie."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.01).reshape(shape)


def realise(spec, shape: tuple, n: int, seed: int, *, spaced: bool = False) -> Case:
    """Values for a drawn structure, re-drawn from one seeded generator until away from kinks."""
    rng = np.random.default_rng(seed)
    base = engine.init(spec, shape, rng, dtype=np.float64)
    base_state = engine.init_state(spec, shape, np.float64)
    for _ in range(200):
        x = _spaced(rng, (n, *shape)) if spaced else rng.standard_normal((n, *shape))
        params = tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), base)
        # running statistics away from their start: mean ~ N(0, 0.3), var in (0.5, 1.5)
        state = tree_map(lambda a: a + rng.uniform(-0.5, 0.5, a.shape), base_state)
        if kink_margin(spec, params, x, state) > KINK_MARGIN:
            return Case(spec, tuple(shape), x, params, state)
    raise RuntimeError(f"could not draw values away from kinks for {spec!r} on {shape}")


def _cases(
    structures: st.SearchStrategy, *, spaced: bool = False, min_n: int = 1
) -> st.SearchStrategy:
    return st.builds(
        lambda s, n, seed: realise(s[0], s[1], n, seed, spaced=spaced),
        structures,
        st.integers(min_n, min_n + 2),
        seeds,
    )


# ---------------------------------------------------------------- per-layer structures


def _side(lo: int) -> st.SearchStrategy:
    return st.integers(max(1, lo), max(1, lo) + 5)


@st.composite
def dense_structures(draw):
    spec = dense(n_out=draw(st.integers(1, 6)), activation=draw(acts))
    n_in = draw(st.integers(1, 6))
    return spec, draw(st.sampled_from([(n_in,), (draw(st.integers(1, 4)), n_in)]))  # or (T, C)


def _image(draw, lo: int, square: bool) -> tuple[int, int]:
    h = draw(_side(lo))
    if square:
        return h, h
    return h, draw(_side(lo).filter(lambda w: w != h))


# Named cases: each structure strategy first picks one of these (st.sampled_from), so that every
# case is drawn about as often as the others, and reports it with hypothesis.event
# (pytest --hypothesis-show-statistics shows the shares; test_strategies.py asserts them).
CONV2D_KINDS = ("square", "non-square", "strided", "padded", "output-side", "winograd")
CONV2D_TRANSPOSE_KINDS = ("plain", "overlapping", "stride > k", "stride >= 4", "padding >= k")
MAXPOOLING_KINDS = ("default stride", "overlapping", "stride > k", "ragged")


def conv2d_traits(spec, shape) -> set[str]:
    """The named properties a drawn conv2d structure has (a structure may have several)."""
    C, H, W = shape
    out = {"square" if H == W else "non-square"}
    if spec.stride > 1:
        out.add("strided")
    if spec.padding > 0:
        out.add("padded")
    if spec.stride == 1 and spec.channels < C:
        out.add("output-side")
    OH, OW = (conv_out(n, spec.k, spec.stride, spec.padding) for n in (H, W))
    if spec.k == 3 and spec.stride == 1 and _winograd.pays(C, spec.channels, OH, OW):
        out.add("winograd")  # the dispatch rule's own verdict, so a retuned rule stays covered
    return out


def conv2d_transpose_traits(spec, shape) -> set[str]:
    out = set()
    if spec.stride < spec.k:
        out.add("overlapping")
    if spec.stride > spec.k:
        out.add("stride > k")
    if spec.stride >= 4:
        out.add("stride >= 4")
    if spec.padding >= spec.k:
        out.add("padding >= k")
    if spec.stride == 1 and spec.padding == 0:
        out.add("plain")
    return out


def maxpooling_traits(spec, shape) -> set[str]:
    _, H, W = shape
    out = set()
    if spec.stride is None:
        out.add("default stride")
    if spec.s < spec.k:
        out.add("overlapping")
    if spec.s > spec.k:
        out.add("stride > k")
    if (H - spec.k) % spec.s or (W - spec.k) % spec.s:
        out.add("ragged")
    return out


@st.composite
def conv2d_structures(draw):
    kind = draw(st.sampled_from(CONV2D_KINDS))
    event(f"conv2d: {kind}")
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(2, 4)) if kind == "strided" else draw(st.integers(1, 3))
    pad = draw(st.integers(1, 3)) if kind == "padded" else draw(st.integers(0, 2))
    c_in = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 4))
    if kind == "output-side":  # stride 1, fewer outputs than inputs: no im2col
        stride, c_in = 1, draw(st.integers(2, 5))
        channels = draw(st.integers(1, c_in - 1))
    if kind == "winograd":  # 3x3, stride 1, the channels and outputs the rule takes
        many = _winograd.MIN_CHANNELS
        c_in = draw(st.integers(many, many + 3))
        spec = conv2d(3, draw(st.integers(c_in, c_in + 4)), padding=pad, activation=draw(acts))
        OH = draw(st.sampled_from([8, 10, 12]))
        OW = OH if draw(st.booleans()) else draw(st.sampled_from([8, 10, 11, 12, 13]))
        return spec, (c_in, OH + 2 - 2 * pad, OW + 2 - 2 * pad)  # odd OW only beside even OH
    spec = conv2d(k=k, channels=channels, stride=stride, padding=pad, activation=draw(acts))
    lo = k - 2 * pad  # H + 2 pad >= k
    H, W = _image(
        draw, lo, square=kind == "square" or (kind != "non-square" and draw(st.booleans()))
    )
    return spec, (c_in, H, W)


@st.composite
def conv2d_transpose_structures(draw):
    kind = draw(st.sampled_from(CONV2D_TRANSPOSE_KINDS))
    event(f"conv2d_transpose: {kind}")
    k = draw(st.integers(1, 4))
    if kind == "plain":
        s, pad = 1, 0
    elif kind == "overlapping":
        k = max(k, 2)
        s, pad = draw(st.integers(1, k - 1)), draw(st.integers(0, k - 1))
    elif kind == "stride > k":
        s, pad = draw(st.integers(k + 1, k + 3)), draw(st.integers(0, 2))
    elif kind == "stride >= 4":
        s, pad = draw(st.integers(4, 6)), draw(st.integers(0, 3))
    else:  # padding >= k: crops more than a kernel's width off every side
        s, pad = draw(st.integers(1, 4)), draw(st.integers(k, k + 2))
    lo = max(1, -(-(2 * pad + 1 - k) // s) + 1)  # (H - 1) s - 2 pad + k >= 1
    H, W = draw(st.integers(lo, lo + 4)), draw(st.integers(lo, lo + 4))
    spec = conv2d_transpose(
        k=k, channels=draw(st.integers(1, 4)), stride=s, padding=pad, activation=draw(acts)
    )
    return spec, (draw(st.integers(1, 3)), H, W)


@st.composite
def maxpooling_structures(draw):
    kind = draw(st.sampled_from(MAXPOOLING_KINDS))
    event(f"maxpooling: {kind}")
    k = draw(st.integers(1, 3))
    if kind == "default stride":
        stride = None
    elif kind == "overlapping":
        k = max(k, 2)
        stride = draw(st.integers(1, k - 1))
    elif kind == "stride > k":
        stride = draw(st.integers(k + 1, 4))
    else:
        stride = draw(st.none() | st.integers(1, 4))
    spec = maxpooling(k=k, stride=stride)
    s = spec.s
    H, W = draw(_side(k)), draw(_side(k))
    if kind == "ragged" and not ((H - k) % s or (W - k) % s):
        if s == 1:  # stride 1 never leaves a ragged edge: take one that does
            spec = maxpooling(k=k, stride=2)
            s = 2
        H = k + s * draw(st.integers(0, 2)) + 1  # one row past the last whole window
    return spec, (draw(st.integers(1, 3)), H, W)


def _any_shape() -> st.SearchStrategy:
    return st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def flatten_structures():
    return st.tuples(st.just(flatten()), _any_shape())


def softmax_structures():
    return st.tuples(st.just(softmax()), _any_shape())


@st.composite
def avgpooling_structures(draw):
    """The example plugin (examples/fran_avgpool); only drawn when it is installed."""
    k = draw(st.integers(1, 3))
    spec = registry.get("avgpooling")(k=k, stride=draw(st.none() | st.integers(1, 4)))
    return spec, (draw(st.integers(1, 3)), draw(_side(k)), draw(_side(k)))


def activation_structures():
    return st.tuples(st.builds(activation, acts), _any_shape())


def dropout_structures():
    rates = st.sampled_from([0.0, 0.1, 0.5, 0.9])
    return st.tuples(st.builds(dropout, rates), _any_shape())


@st.composite
def batchnorm_structures(draw):
    spec = batchnorm(
        momentum=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])), eps=draw(st.sampled_from([1e-5, 0.1]))
    )
    image = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return spec, draw(st.sampled_from([image, (draw(st.integers(1, 5)),)]))


@st.composite
def residual_structures(draw):
    """Blocks of smooth layers (relu would sit after batch norm, whose training mode moves kinks)
    with an identity or a projection shortcut, on vectors or images."""
    smooth = st.sampled_from(["tanh", "sigmoid", "identity"])
    if draw(st.booleans()):
        F = draw(st.integers(1, 4))
        out = draw(st.integers(1, 4)) if draw(st.booleans()) else F
        layers = [
            dense(n_out=out, activation=draw(smooth)),
            batchnorm(),
            dropout(draw(st.sampled_from([0.0, 0.3]))),
        ]
        shortcut = None if out == F and draw(st.booleans()) else [dense(n_out=out), batchnorm()]
        return residual(layers, shortcut=shortcut), (F,)
    C, H = draw(st.integers(1, 2)), draw(st.integers(2, 4))
    stride = draw(st.integers(1, 2))
    out = C if stride == 1 and draw(st.booleans()) else draw(st.integers(1, 3))
    layers = [
        conv2d(k=3, channels=out, stride=stride, padding=1, activation=draw(smooth)),
        batchnorm(),
    ]
    shortcut = (
        None if (out, stride) == (C, 1) else [conv2d(k=1, channels=out, stride=stride), batchnorm()]
    )
    return residual(layers, shortcut=shortcut), (C, H, H)


# ---------------------------------------------------------------- sequences: (T, C) samples


def _sequence() -> st.SearchStrategy:
    return st.tuples(st.integers(1, 4), st.integers(1, 5))


def layernorm_structures():
    return st.tuples(st.builds(layernorm, st.sampled_from([1e-5, 0.1])), _any_shape())


def position_embedding_structures():
    return st.tuples(st.just(position_embedding()), _sequence())


def recurrent_structures(cls):
    return st.tuples(st.builds(cls, st.integers(1, 4)), _sequence())


@st.composite
def attention_structures(draw):
    heads, d = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spec = attention(
        heads,
        causal=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.3])),
    )
    return spec, (draw(st.integers(1, 4)), heads * d)


@st.composite
def sequence_block_structures(draw):
    """The pre-norm transformer block's two halves: residual([layernorm, attention]) and
    residual([layernorm, dense, gelu, dense]) on (T, C)."""
    heads, d = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    C = heads * d
    attend = residual([layernorm(), attention(heads, causal=True, dropout=0.3)])
    act = draw(st.sampled_from(["gelu", "gelu_tanh"]))
    mlp = residual([layernorm(), dense(2 * C, activation=act), dense(C), dropout(0.3)])
    layers = draw(st.sampled_from([[attend], [mlp], [attend, mlp]]))
    return engine.network(layers), (draw(st.integers(1, 4)), C)


def embedding_cases() -> st.SearchStrategy:
    """Integer token ids (as floats, the model's dtype) of a (T,) sample, every id in range."""

    def realise_ids(vocab, dim, T, n, seed):
        spec = embedding(vocab, dim)
        rng = np.random.default_rng(seed)
        params = engine.init(spec, (T,), rng, dtype=np.float64)
        x = rng.integers(0, vocab, (n, T)).astype(np.float64)
        return Case(spec, (T,), x, params)

    return st.builds(
        realise_ids,
        st.integers(1, 6),
        st.integers(1, 4),
        st.integers(1, 5),
        st.integers(1, 3),
        seeds,
    )


# ---------------------------------------------------------------- composed networks


@st.composite
def classifier_structures(draw):
    """conv2d -> maxpooling -> flatten -> dense -> softmax."""
    k, s, pad = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    pk = draw(st.integers(1, 3))
    pool = maxpooling(k=pk, stride=draw(st.none() | st.integers(1, 3)))
    lo = (pk - 1) * s + k - 2 * pad  # the conv's output is at least the pooling window
    layers = [
        conv2d(k=k, channels=draw(st.integers(1, 3)), stride=s, padding=pad, activation=draw(acts)),
        pool,
        flatten(),
        dense(n_out=draw(st.integers(1, 4)), activation=draw(acts)),
        softmax(),
    ]
    return engine.network(layers), (draw(st.integers(1, 2)), draw(_side(lo)), draw(_side(lo)))


@st.composite
def autoencoder_structures(draw):
    """conv2d -> conv2d_transpose back to the input's channels."""
    k, s, pad = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    C = draw(st.integers(1, 2))
    H, W = draw(_side(k - 2 * pad)), draw(_side(k - 2 * pad))
    OH, OW = conv_out(H, k, s, pad), conv_out(W, k, s, pad)
    k2, s2 = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    max_pad = ((min(OH, OW) - 1) * s2 + k2 - 1) // 2
    layers = [
        conv2d(k=k, channels=draw(st.integers(1, 3)), stride=s, padding=pad, activation=draw(acts)),
        conv2d_transpose(
            k=k2,
            channels=C,
            stride=s2,
            padding=draw(st.integers(0, min(max_pad, 1))),
            activation=draw(acts),
        ),
    ]
    return engine.network(layers), (C, H, W)


def classifier_cases() -> st.SearchStrategy:
    return _cases(classifier_structures())


def autoencoder_cases() -> st.SearchStrategy:
    return _cases(autoencoder_structures())


# ---------------------------------------------------------------- by registry name


def generic_cases(name: str) -> st.SearchStrategy:
    """A plugin layer with a no-argument constructor, on a small image or vector batch."""
    cls = registry.get(name)
    try:
        spec = cls()
    except TypeError as exc:
        raise TypeError(
            f"layer {name!r} cannot be built without arguments ({exc}); give it a strategy in "
            f"tests/strategies.STRATEGIES or test it with fran.testing.check_layer"
        ) from None
    for shape in ((3, 6, 6), (5,)):
        try:
            engine.output_shape(spec, shape)
        except (ValueError, TypeError):
            continue
        return seeds.map(lambda seed, shape=shape: realise(spec, shape, 2, seed))
    raise ValueError(f"layer {name!r} takes neither a (3, 6, 6) image nor a (5,) vector")


STRATEGIES: dict[str, Callable[[], st.SearchStrategy]] = {
    "dense": lambda: _cases(dense_structures()),
    "conv2d": lambda: _cases(conv2d_structures()),
    "conv2d_transpose": lambda: _cases(conv2d_transpose_structures()),
    "maxpooling": lambda: _cases(maxpooling_structures(), spaced=True),
    "flatten": lambda: _cases(flatten_structures()),
    "softmax": lambda: _cases(softmax_structures()),
    "avgpooling": lambda: _cases(avgpooling_structures()),
    "network": lambda: classifier_cases() | autoencoder_cases(),
    "activation": lambda: _cases(activation_structures()),
    "dropout": lambda: _cases(dropout_structures()),
    "batchnorm": lambda: _cases(batchnorm_structures(), min_n=2),
    "residual": lambda: (
        _cases(residual_structures(), min_n=2) | _cases(sequence_block_structures())
    ),
    "layernorm": lambda: _cases(layernorm_structures()),
    "position_embedding": lambda: _cases(position_embedding_structures()),
    "rnn": lambda: _cases(recurrent_structures(rnn)),
    "lstm": lambda: _cases(recurrent_structures(lstm)),
    "attention": lambda: _cases(attention_structures()),
    "embedding": embedding_cases,
}


def cases(name: str) -> st.SearchStrategy:
    """Cases for the layer registered as `name` (the generic fallback for unknown plugins)."""
    make = STRATEGIES.get(name)
    return make() if make is not None else generic_cases(name)
