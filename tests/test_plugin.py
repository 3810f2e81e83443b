"""The example plugin examples/fran_avgpool, installed, works everywhere a built-in layer does.

It is found through its `fran.layers` entry point, built by name, differentiated correctly
(fran.testing.check_layer), trained inside a network, and saved and loaded by name. Its forward
and backward passes are compared with slow reference loops (torch stays in tests/oracle).

The tox `tests` environment installs the plugin, so a missing plugin is a failure here, not a
skip: install it with `pip install -e examples/fran_avgpool`, or set FRAN_NO_PLUGIN_TESTS=1.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys

import numpy as np
import pytest
from helpers.subprocess_python import run_python
from hypothesis import given
from hypothesis import strategies as st

import fran
from fran import registry
from fran.testing import check_init, check_layer

NAME, MODULE, DIST = "avgpooling", "fran_avgpool", "fran-avgpool"


@pytest.fixture(scope="module")
def plugin():
    """The fran_avgpool module, or a clear failure (a skip only with FRAN_NO_PLUGIN_TESTS=1)."""
    try:
        return importlib.import_module(MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MODULE:
            raise
    if os.environ.get("FRAN_NO_PLUGIN_TESTS") == "1":
        pytest.skip("FRAN_NO_PLUGIN_TESTS=1: the example plugin is not installed")
    pytest.fail(
        f"the example plugin {DIST} is not installed in {sys.executable}: run "
        f"`pip install -e examples/fran_avgpool` (tox's tests env does), or set "
        f"FRAN_NO_PLUGIN_TESTS=1 to skip these tests",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def avgpooling(plugin):
    """The spec class, fetched by name through the registry as a user would."""
    return registry.get(NAME)


# ---------------------------------------------------------------- discovery


DISCOVERY_PROBE = """
    import importlib.metadata, json, sys

    queries = []
    real = importlib.metadata.entry_points
    importlib.metadata.entry_points = lambda *a, **k: queries.append(k) or real(*a, **k)

    import fran

    out = {"import": [len(queries), fran.registry._plugins.cache_info().currsize,
                      "fran_avgpool" in sys.modules]}
    names = fran.registry.names()
    out["names"] = [names, "fran_avgpool" in sys.modules]
    spec = fran.registry.get("avgpooling")(k=2)
    out["get"] = [repr(spec), "fran_avgpool" in sys.modules, len(queries)]
    print(json.dumps(out))
"""


def test_discovered_lazily_in_a_fresh_interpreter(plugin):
    out = run_python(DISCOVERY_PROBE)
    assert out["import"] == [0, 0, False], "import fran must not query or load plugins"
    names, imported = out["names"]
    assert NAME in names and {"dense", "conv2d", "maxpooling", "softmax"} <= set(names)
    assert not imported, "names() must not import the plugin"
    assert out["get"] == ["avgpooling(k=2)", True, 1]


def test_declared_as_an_entry_point(plugin):
    (ep,) = [ep for ep in importlib.metadata.entry_points(group=registry.GROUP) if ep.name == NAME]
    assert ep.value == "fran_avgpool:avgpooling"
    assert ep.dist is not None and ep.dist.name == DIST
    assert ep.load() is plugin.avgpooling
    assert NAME in registry.names()


def test_built_by_name(plugin, avgpooling):
    assert avgpooling is plugin.avgpooling
    spec = registry.get(NAME)(k=2)
    assert spec == plugin.avgpooling(k=2) and spec.stride is None and spec.s == 2
    assert repr(spec) == "avgpooling(k=2)"  # defaults left out, as the built-ins print
    assert repr(plugin.avgpooling(k=3, stride=1)) == "avgpooling(k=3, stride=1)"
    assert registry.rules_for(spec).name == NAME
    assert hash(spec) == hash(plugin.avgpooling(2))
    assert fran.output_shape(spec, (3, 7, 9)) == (3, 3, 4)
    assert fran.output_shape(avgpooling(k=3, stride=1), (1, 5, 5)) == (1, 3, 3)
    assert fran.init(spec, (3, 7, 9)) == {}


@pytest.mark.parametrize(
    "kwargs", [{"k": 0}, {"k": -1}, {"k": True}, {"k": 2.0}, {"k": 2, "stride": 0}]
)
def test_invalid_specs_are_rejected(avgpooling, kwargs):
    with pytest.raises(ValueError, match="avgpooling"):
        avgpooling(**kwargs)


@pytest.mark.parametrize("shape", [(4, 4), (1, 1, 4, 4), (2, 1, 5)])
def test_bad_input_shapes_are_rejected(avgpooling, shape):
    with pytest.raises(ValueError, match="avgpooling"):
        fran.output_shape(avgpooling(k=2), shape)


# ---------------------------------------------------------------- maths against slow loops


def reference_forward(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """Average pooling, one output pixel at a time."""
    N, C, H, W = x.shape
    OH, OW = (H - k) // s + 1, (W - k) // s + 1
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for r in range(OH):
                for q in range(OW):
                    y[n, c, r, q] = x[n, c, r * s : r * s + k, q * s : q * s + k].mean()
    return y


def reference_backward(dy: np.ndarray, x_shape: tuple, k: int, s: int) -> np.ndarray:
    """Each output's gradient spread evenly over its window, one output pixel at a time."""
    N, C, OH, OW = dy.shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for r in range(OH):
                for q in range(OW):
                    dx[n, c, r * s : r * s + k, q * s : q * s + k] += dy[n, c, r, q] / k**2
    return dx


@st.composite
def configs(draw):
    """(k, stride, per-sample shape, batch size, seed): overlapping, ragged and exact windows."""
    k = draw(st.integers(1, 4))
    stride = draw(st.none() | st.integers(1, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(k, k + 6)), draw(st.integers(k, k + 6)))
    return k, stride, shape, draw(st.integers(1, 3)), draw(st.integers(0, 2**32 - 1))


@given(config=configs())
def test_forward_and_backward_match_reference_loops(avgpooling, config):
    k, stride, shape, n, seed = config
    spec = avgpooling(k=k, stride=stride)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    x.setflags(write=False)
    y = fran.apply(spec, {}, x)
    np.testing.assert_allclose(y, reference_forward(x, k, spec.s), rtol=1e-12, atol=1e-12)
    y2, pullback = fran.vjp(spec, {}, x)
    np.testing.assert_array_equal(y2, y)
    dy = rng.standard_normal(y.shape)
    dy.setflags(write=False)
    gparams, dx = pullback(dy)
    assert gparams == {}
    np.testing.assert_allclose(
        dx, reference_backward(dy, x.shape, k, spec.s), rtol=1e-12, atol=1e-12
    )


@given(config=configs())
def test_conformance(avgpooling, config):
    """fran.testing.check_layer in float64 on random configurations (avgpooling has no kinks)."""
    k, stride, shape, n, seed = config
    spec = avgpooling(k=k, stride=stride)
    params = check_init(spec, shape, rng=seed, dtype=np.float64)
    x = np.random.default_rng(seed).standard_normal((n, *shape))
    check_layer(spec, params, x, rng=seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_the_input(avgpooling, dtype):
    x = np.ones((2, 1, 4, 4), dtype=dtype)
    y, pullback = fran.vjp(avgpooling(k=2), {}, x)
    assert y.dtype == dtype and np.array_equal(y, np.ones((2, 1, 2, 2)))
    assert pullback(np.ones_like(y))[1].dtype == dtype


# ---------------------------------------------------------------- inside a network


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8 x 8 noisy images of a vertical (class 0) or a horizontal (class 1) bar."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    where = rng.integers(1, 7, n)
    X = 0.3 * rng.standard_normal((n, 1, 8, 8))
    X[y == 0, 0, :, :] += (np.arange(8) == where[y == 0, None])[:, None, :]
    X[y == 1, 0, :, :] += (np.arange(8) == where[y == 1, None])[:, :, None]
    return X.astype(np.float32), y


def classifier(avgpooling) -> fran.network:
    return fran.network(
        [
            fran.conv2d(3, 4, padding=1, activation="relu"),
            avgpooling(k=2),
            fran.flatten(),
            fran.dense(2),
            fran.softmax(),
        ]
    )


def test_trains_inside_a_network(avgpooling):
    X, y = bars(256, seed=0)
    model = fran.init_weights(classifier(avgpooling), 8, 8, seed=0)
    before = fran.evaluate_nn(model, X, y)["loss"]
    for _ in range(5):
        model = fran.train_nn(model, X, y, optimizer=fran.adam(1e-2), batch_size=32)
    after = fran.evaluate_nn(model, X, y)["loss"]
    assert after < 0.6 * before, (before, after)
    held_out = fran.evaluate_nn(model, *bars(256, seed=1))
    assert held_out["accuracy"] > 0.85, held_out
    assert model.epoch == 5
    assert "avgpooling" in str(model)  # the summary table names the plugin layer


def test_network_of_plugin_layers_passes_the_conformance_check(avgpooling):
    net = fran.network([avgpooling(k=2, stride=1), fran.conv2d(2, 2), avgpooling(k=2)])
    params = check_init(net, (2, 7, 7), rng=3, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 7))
    check_layer(net, params, x, rng=3)


def test_save_and_load_by_name(avgpooling, tmp_path):
    X, y = bars(64, seed=2)
    model = fran.init_weights(classifier(avgpooling), 8, 8, seed=4)
    model = fran.train_nn(model, X, y, optimizer=fran.adam(1e-2), batch_size=16)
    path = tmp_path / "model.npz"
    fran.save(path, model)
    with np.load(path) as archive:
        meta = json.loads(archive["__meta__"].tobytes().decode())
    assert '"avgpooling"' in json.dumps(meta)  # stored by registry name, not by pickle
    loaded = fran.load(path)
    assert loaded.spec == model.spec
    assert type(loaded.spec.layers[1]) is avgpooling
    assert loaded.epoch == model.epoch and loaded.input_shape == model.input_shape
    np.testing.assert_array_equal(fran.predict(loaded, X), fran.predict(model, X))
    resumed = fran.train_nn(loaded, X, y, optimizer=fran.adam(1e-2), batch_size=16)
    again = fran.train_nn(model, X, y, optimizer=fran.adam(1e-2), batch_size=16)
    for a, b in zip(resumed.params, again.params, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
