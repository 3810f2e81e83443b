"""Shared by the ONNX tests (torch-free and oracle): the example networks and random networks of
every built-in layer kind as Models with non-trivial running statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import numpy as np
from hypothesis import strategies as st

import fran
from fran import engine
from fran.tree import freeze, tree_items, tree_map

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
# where the folder examples/fran_avgpool would shadow the plugin's editable install as an empty
# namespace package (its ONNX mapping then fails to load on the first op without a loader): the
# plugin's own folder goes first
sys.path.insert(0, str(ROOT / "examples" / "fran_avgpool"))

import char_lm  # noqa: E402, I001  (examples/ is on the path only now)
import cnn_fmnist  # noqa: E402
import conv_autoencoder  # noqa: E402
import keras_mnist  # noqa: E402
import lenet5_mnist  # noqa: E402
import pytorch_mnist  # noqa: E402
import resnet_fmnist  # noqa: E402

from helpers import strategies  # noqa: E402  (tests/ is on sys.path: the folder of tests/conftest.py)

EXAMPLES = {
    m.__name__: m
    for m in (lenet5_mnist, cnn_fmnist, conv_autoencoder, pytorch_mnist, keras_mnist, resnet_fmnist)
}
BUILT_INS = [
    "dense",
    "conv2d",
    "conv2d_transpose",
    "maxpooling",
    "flatten",
    "softmax",
    "activation",
    "dropout",
    "batchnorm",
    "residual",
    "network",
    "layernorm",
    "position_embedding",
    "embedding",
    "attention",
    "rnn",
    "lstm",
]
# residual draws transformer blocks too (layernorm, causal attention, dense on (T, C) with gelu
# or gelu_tanh), and dense and activation every activation fran has: every built-in is drawn


def with_stats(model: fran.Model, seed: int = 0) -> fran.Model:
    """model with random running statistics (mean ~ N(0, 1), var in [0.5, 2]) in every batchnorm."""
    rng = np.random.default_rng(seed)
    paths = iter([p for p, _ in tree_items(model.state)])

    def draw(a):
        name = next(paths)
        if name.endswith("var"):
            return rng.uniform(0.5, 2.0, a.shape).astype(a.dtype)
        return rng.standard_normal(a.shape).astype(a.dtype)

    state = freeze(tree_map(draw, model.state))
    return fran.Model(
        spec=model.spec, params=model.params, input_shape=model.input_shape, dtype=model.dtype,
        state=state, seed=model.seed,
    )  # fmt: skip


def example_model(name: str, dtype=np.float32, seed: int = 0) -> fran.Model:
    return with_stats(
        fran.init_weights(EXAMPLES[name].build(), 28, 28, dtype=dtype, seed=seed), seed
    )


def images(n: int, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28)).astype(dtype)


@st.composite
def random_models(draw, kinds=tuple(BUILT_INS), dtype=np.float64):
    """(Model, x): one drawn layer of any built-in kind (a network of it), or a drawn network
    (conv -> pool -> flatten -> dense -> softmax, conv -> conv_transpose, transformer blocks),
    in `dtype`; embedding's x are integer token ids in the model's dtype, as predict takes them."""
    name = draw(st.sampled_from(kinds))
    case = draw(strategies.cases(name))
    spec = case.spec if isinstance(case.spec, engine.network) else engine.network([case.spec])
    params = case.params if isinstance(case.spec, engine.network) else (case.params,)
    params = freeze(tree_map(lambda a: np.asarray(a, dtype), params))
    model = fran.Model(spec=spec, params=params, input_shape=case.shape, dtype=dtype)
    return with_stats(model, draw(strategies.seeds)), case.x.astype(dtype)


def _eps32(spec):
    if isinstance(spec, (fran.batchnorm, fran.layernorm)):
        return attrs.evolve(spec, eps=float(np.float32(spec.eps)))
    if isinstance(spec, fran.residual):
        g = None if spec.shortcut is None else [_eps32(s) for s in spec.shortcut]
        return fran.residual([_eps32(s) for s in spec.layers], shortcut=g)
    if isinstance(spec, engine.network):
        return engine.network([_eps32(s) for s in spec.layers], spec.epoch, spec.step)
    return spec


def eps_as_written(model: fran.Model) -> fran.Model:
    """model with every batchnorm's and layernorm's eps rounded to float32, as ONNX's epsilon
    attribute keeps it: what a float64 file computes, to compare with at 1e-12 (a layernorm over
    features of small variance magnifies eps's float32 rounding, 2.5e-13 for 1e-5, past 1e-12)."""
    return fran.Model(
        spec=_eps32(model.spec), params=model.params, input_shape=model.input_shape,
        dtype=model.dtype, state=model.state, seed=model.seed,
    )  # fmt: skip


def char_lm_model(kind: str = "transformer", dtype=np.float32, T: int = 16) -> fran.Model:
    """examples/char_lm.py's model as the example builds it (its default arguments: 4 blocks of
    width 64 and 4 heads; the recurrent variants embedding -> rnn/lstm(64) -> dense), for words
    of T tokens, with weights moved off their init (layernorm's ones and zeros, the zero biases)."""
    args = char_lm.parse_args(["--model", kind])
    model = fran.init_weights(
        char_lm.build(args), 1, T, scheme="torch", seed=args.seed, dtype=dtype
    )
    rng = np.random.default_rng(1)
    params = tree_map(
        lambda a: (a + 0.1 * rng.standard_normal(a.shape)).astype(dtype), model.params
    )
    return fran.Model(
        spec=model.spec, params=freeze(params), input_shape=model.input_shape, dtype=dtype
    )


def token_ids(n: int, T: int = 16, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """A batch of words as char_lm's predict takes them: ids in [0, 27) in the model's dtype."""
    return np.random.default_rng(seed).integers(0, len(char_lm.VOCAB), (n, T)).astype(dtype)
