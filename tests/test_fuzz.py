"""Fuzz the public entry points with junk: the only exceptions are the documented ones.

Documented: ValueError (bad values, shapes, names; CheckpointError, IDXError and ChecksumError are
ValueErrors), TypeError (wrong kinds of things), fran.registry.RegistryError (unknown or broken
layers) and fran.TrainingError (a loss that became NaN or inf). Anything else — an IndexError from
deep inside NumPy, a ZeroDivisionError, a KeyError — is a bug: the caller could not have known.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fran
from fran import (
    conv2d,
    conv2d_transpose,
    dense,
    evaluate_nn,
    flatten,
    init_weights,
    maxpooling,
    network,
    predict,
    softmax,
    train_nn,
)
from fran.data import read_idx
from fran.registry import RegistryError

DOCUMENTED = (ValueError, TypeError, RegistryError, fran.TrainingError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-2, 5), max_size=3),
    st.tuples(st.integers(-2, 5)),
    st.just(np.array([3])),
)


def _raises_only_documented(call):
    try:
        call()
    except DOCUMENTED:
        pass


@FUZZ
@given(data=st.data())
def test_layer_constructors_with_junk(data):
    cls = data.draw(st.sampled_from([dense, conv2d, conv2d_transpose, maxpooling]))
    fields = [f.name for f in cls.__attrs_attrs__]
    kwargs = {name: data.draw(junk) for name in fields if data.draw(st.booleans())}
    _raises_only_documented(lambda: cls(**kwargs))


@FUZZ
@given(name=st.text(max_size=12))
def test_registry_get_with_junk(name):
    _raises_only_documented(lambda: fran.registry.get(name))


def _mlp():
    return init_weights(network([dense(8, "relu"), dense(3), softmax()]), 1, 6)


def _cnn():
    net = network([conv2d(k=3, channels=2, activation="tanh"), maxpooling(2), flatten(), dense(3)])
    return init_weights(net, 8, 8)


MODELS = {"mlp": _mlp(), "cnn": _cnn()}

arrays = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
    ),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.just(6)), elements=st.floats()),
    hnp.arrays(np.float32, st.tuples(st.integers(0, 5), st.just(8), st.just(8))),
    st.lists(st.text(max_size=2), max_size=4).map(np.array),
    junk,
)


SAMPLE = {"mlp": [(6,)], "cnn": [(1, 8, 8), (8, 8)]}


@st.composite
def nearly_valid(draw, which):
    """Inputs that pass the shape checks, and labels that may or may not: reaches deeper code."""
    n = draw(st.integers(1, 10))
    shape = (n, *draw(st.sampled_from(SAMPLE[which])))
    X = draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32)))
    y = draw(
        st.one_of(
            hnp.arrays(
                np.int64, st.sampled_from([(n,), (n + 1,), (n, 3)]), elements=st.integers(-1, 4)
            ),
            hnp.arrays(np.float64, st.just((n, 3)), elements=st.floats()),
            arrays,
        )
    )
    return X, y


@FUZZ
@given(
    data=st.data(),
    which=st.sampled_from(sorted(MODELS)),
    batch_size=st.one_of(st.integers(1, 12), st.integers(-2, 12), junk),
    loss=st.one_of(st.sampled_from([None, None, "mse", "cross_entropy"]), st.just("hinge"), junk),
)
def test_training_entry_points_with_junk(data, which, batch_size, loss):
    model = MODELS[which]
    X, y = data.draw(st.one_of(nearly_valid(which), st.tuples(arrays, arrays)))
    with np.errstate(all="ignore"):
        _raises_only_documented(
            lambda: train_nn(model, X, y, batch_size=batch_size, loss=loss, optimizer=fran.sgd(0.1))
        )
        _raises_only_documented(lambda: evaluate_nn(model, X, y, batch_size=batch_size, loss=loss))
        _raises_only_documented(lambda: predict(model, X, batch_size=batch_size))


@FUZZ
@given(
    m_in=st.one_of(st.integers(-1, 12), junk),
    n_in=st.one_of(st.integers(-1, 12), junk),
    channels=st.one_of(st.integers(-1, 3), junk),
    scheme=st.one_of(st.none(), st.sampled_from(["he_normal", "torch", "nope"]), junk),
    seed=st.one_of(st.integers(-2, 2**40), junk),
)
def test_init_weights_with_junk(m_in, n_in, channels, scheme, seed):
    net = network([conv2d(k=3, channels=2), maxpooling(2), flatten(), dense(3), softmax()])
    _raises_only_documented(
        lambda: init_weights(net, m_in, n_in, channels, scheme=scheme, seed=seed)
    )


@FUZZ
@given(optimizer=junk | st.sampled_from(["adam", "sgd", "adamw"]))
def test_optimizer_names_and_junk(optimizer):
    X = np.zeros((4, 6), np.float32)
    _raises_only_documented(
        lambda: train_nn(MODELS["mlp"], X, np.zeros(4, np.int64), optimizer=optimizer)
    )


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    """A real saved model (with Adam state) to truncate and corrupt."""
    model = train_nn(MODELS["mlp"], np.zeros((4, 6), np.float32), np.zeros(4, np.int64))
    path = tmp_path_factory.mktemp("good") / "model.npz"
    fran.save(path, model)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_load_with_junk_bytes(data, tmp_path_factory, good_bytes):
    GOOD = good_bytes
    kind = data.draw(st.sampled_from(["random", "truncated", "flipped", "zip"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=300))
    elif kind == "truncated":
        raw = GOOD[: data.draw(st.integers(0, len(GOOD) - 1))]
    elif kind == "flipped":
        i = data.draw(st.integers(0, len(GOOD) - 1))
        raw = GOOD[:i] + bytes([GOOD[i] ^ data.draw(st.integers(1, 255))]) + GOOD[i + 1 :]
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            # zipfile itself cuts a name at NUL (an empty name crashes writestr) and cannot encode
            # a lone surrogate (UnicodeEncodeError in writestr, drawn only without derandomize)
            chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
            name = st.text(chars, min_size=1, max_size=8)
            z.writestr(data.draw(name), data.draw(st.binary()))
        raw = buf.getvalue()
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    path.write_bytes(raw)
    try:
        fran.load(path)
    except fran.CheckpointError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(raw=st.binary(max_size=64))
def test_read_idx_with_junk_bytes(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "junk-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError):  # IDXError
        read_idx(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_stay_finite(dtype):
    """sigmoid/tanh at +-100, softmax of huge logits, a confident wrong prediction."""
    net = network([dense(4, "sigmoid"), dense(4, "tanh"), dense(3), softmax()])
    model = init_weights(net, 1, 5, dtype=dtype)
    X = np.array([[100, -100, 100, -100, 100], [-100, 100, -100, 100, -100]] * 4, dtype=dtype)
    y = np.array([0, 2] * 4)
    for _ in range(3):
        model = train_nn(model, X * 1000, y, optimizer=fran.sgd(1.0), batch_size=4)
    out = predict(model, X * 1000)
    assert out.dtype == dtype and np.isfinite(out).all()
    assert np.isfinite(evaluate_nn(model, X, y)["loss"])
