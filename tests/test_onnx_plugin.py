"""A plugin layer maps itself to ONNX: examples/fran_avgpool's fran_avgpool_onnx module, found
through the entry point group "fran.onnx" named like the layer (fran_avgpool.py is unchanged)."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

onnx = pytest.importorskip("onnx")

from onnx.reference import ReferenceEvaluator  # noqa: E402

import fran  # noqa: E402
import fran.onnx  # noqa: E402
from fran import conv2d, flatten, network, registry  # noqa: E402
from fran.onnx import OnnxError, _plugins  # noqa: E402

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "fran_avgpool"
if str(PLUGIN) not in sys.path:
    sys.path.insert(0, str(PLUGIN))  # this checkout's mapping module (CI installs it from here)

try:
    avgpooling = registry.get("avgpooling")
except registry.RegistryError:
    pytest.skip("the fran_avgpool example plugin is not installed", allow_module_level=True)

ENTRY = importlib.metadata.EntryPoint("avgpooling", "fran_avgpool_onnx", _plugins.GROUP)


@pytest.fixture
def mapping_by_entry_point(monkeypatch):
    """Only the entry point: the mapping is not registered until fran.onnx loads it."""
    monkeypatch.setattr(_plugins, "_BY_TYPE", dict(_plugins._BY_TYPE))
    monkeypatch.setattr(_plugins, "_BY_OP", {k: list(v) for k, v in _plugins._BY_OP.items()})
    _plugins._BY_TYPE.pop(avgpooling, None)
    _plugins._BY_OP.pop(("", "AveragePool"), None)
    _plugins._all_plugins_loaded.cache_clear()
    monkeypatch.setattr(_plugins, "_entry_points", lambda: (ENTRY,))
    sys.modules.pop("fran_avgpool_onnx", None)
    yield
    _plugins._all_plugins_loaded.cache_clear()


def model(dtype=np.float64):
    net = network([conv2d(k=3, channels=2, activation="tanh"), avgpooling(k=2), flatten()])
    return fran.init_weights(net, 7, 7, dtype=dtype, seed=1)


def test_the_plugin_declares_its_mapping_entry_point():
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["fran.onnx"] == {"avgpooling": "fran_avgpool_onnx"}
    assert "fran_avgpool_onnx" in meta["tool"]["setuptools"]["py-modules"]


def test_export_loads_the_mapping_by_entry_point_and_runs(mapping_by_entry_point, tmp_path):
    m = model()
    proto = onnx.load(fran.onnx.export(m, tmp_path / "m.onnx"))
    assert [n.op_type for n in proto.graph.node] == ["Conv", "Tanh", "AveragePool", "Flatten"]
    x = np.random.default_rng(0).random((3, 1, 7, 7))
    got = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    assert np.abs(got - fran.predict(m, x)).max() < 1e-12
    assert fran.onnx.load(tmp_path / "m.onnx") == m


def test_load_of_a_foreign_average_pool_finds_the_plugin(mapping_by_entry_point, tmp_path):
    proto = fran.onnx.to_model_proto(model())  # loads the mapping through the entry point
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "m.onnx")
    _plugins._BY_OP.pop(("", "AveragePool"))  # forget it again: as in a fresh process
    _plugins._all_plugins_loaded.cache_clear()
    sys.modules.pop("fran_avgpool_onnx")
    back = fran.onnx.load(tmp_path / "m.onnx")  # AveragePool has no loader: the plugins load
    assert ("", "AveragePool") in _plugins._BY_OP
    assert back.spec.layers[1] == avgpooling(k=2)
    x = np.random.default_rng(0).random((3, 1, 7, 7))
    assert np.abs(fran.predict(back, x) - fran.predict(model(), x)).max() < 1e-12


def test_a_plugin_layer_without_mapping_is_named(monkeypatch):
    monkeypatch.setattr(_plugins, "_BY_TYPE", dict(_plugins._BY_TYPE))
    _plugins._BY_TYPE.pop(avgpooling, None)
    monkeypatch.setattr(_plugins, "_entry_points", lambda: ())
    with pytest.raises(
        OnnxError, match=r"layer 'avgpooling' \(avgpooling\(k=2\)\) has no ONNX mapping"
    ):
        fran.onnx.to_model_proto(model())


def test_a_broken_mapping_plugin_fails_alone_with_its_name(monkeypatch):
    monkeypatch.setattr(_plugins, "_BY_TYPE", dict(_plugins._BY_TYPE))
    _plugins._BY_TYPE.pop(avgpooling, None)
    broken = importlib.metadata.EntryPoint("avgpooling", "no_such_module_xyz", _plugins.GROUP)
    monkeypatch.setattr(_plugins, "_entry_points", lambda: (broken,))
    with pytest.raises(
        OnnxError, match=r"plugin 'avgpooling' \(no_such_module_xyz\) failed to load"
    ):
        fran.onnx.to_model_proto(model())


def test_register_checks_its_arguments():
    with pytest.raises(TypeError, match="spec_cls must be a class"):
        fran.onnx.register("avgpooling", export=lambda s, c: "x")
    with pytest.raises(ValueError, match="a loader needs the ops it reads"):
        fran.onnx.register(avgpooling, export=lambda s, c: "x", load=lambda n, c: None)
