"""Contract v3 (issue 21 items 1, 2; issue 23 item 1): sound by default (a batch is cut only for
layers declared per sample), the registry's defaults, capabilities of combinators, shape-only
params and state trees, and the params check of every public entry point."""

from __future__ import annotations

import tracemalloc

import attrs
import numpy as np
import pytest

import fran
from fran import (
    batchnorm,
    conv2d,
    conv2d_transpose,
    dense,
    dropout,
    engine,
    flatten,
    maxpooling,
    network,
    registry,
    residual,
    softmax,
    testing,
)
from fran.testing import PerSampleHint, check_init, check_layer


@pytest.fixture
def scratch_registry(monkeypatch):
    """Layers registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))
    yield
    registry._cached_capabilities.cache_clear()


def _centre_vjp(spec, params, x):
    """y = x - mean over the batch: each sample's output depends on the whole batch."""
    return x - x.mean(axis=0), lambda dy: ({}, dy - dy.mean(axis=0))


# ------------------------------------------------------------------ sound by default (item 1)


def _centring_losses(monkeypatch, cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    model = fran.init_weights(network([flatten(), cls(), dense(10), softmax()], 0, 0), 8, 8)
    losses = {}
    for threads in ("1", "4"):
        monkeypatch.setenv("FRAN_NUM_THREADS", threads)
        _, losses[threads] = fran.train_step(fran.adam(1e-3), fran.cross_entropy, model, (X, y))
    return losses


def test_an_undeclared_batch_dependent_layer_gives_one_loss_for_any_thread_count(
    scratch_registry, monkeypatch
):
    """The issue's example: a plugin y = x - x.mean(axis=0) registered with no declaration gave
    loss 5.287 on one thread and 2.153 on four; now it is computed whole, bitwise alike."""

    @attrs.frozen
    class centre:
        pass

    registry.register("centre_v3", centre, vjp=_centre_vjp)
    assert engine.whole_batch(network([flatten(), centre()]))
    losses = _centring_losses(monkeypatch, centre)
    assert losses["1"] == losses["4"], losses
    x = np.random.default_rng(1).normal(size=(6, 4))
    check_layer(centre(), {}, x, rng=0)  # claims nothing: nothing to disprove


def test_a_false_per_sample_claim_fails_check_layer_and_says_what_to_declare(scratch_registry):
    @attrs.frozen
    class centre_liar:
        pass

    registry.register("centre_liar_v3", centre_liar, vjp=_centre_vjp, per_sample=True)
    x = np.random.default_rng(1).normal(size=(6, 4))
    with pytest.raises(AssertionError, match=r"claims per_sample=True.*declare per_sample=False"):
        check_layer(centre_liar(), {}, x, rng=0)


def test_a_training_only_batch_dependence_is_told_to_declare_inference(scratch_registry):
    """Batch norm claiming per_sample=True fails in training and is pointed at "inference"."""

    @attrs.frozen
    class bn_liar:
        pass

    rules = registry.rules_for(batchnorm())
    registry.register(
        "bn_liar_v3",
        bn_liar,
        vjp=lambda spec, p, x, **kw: rules.vjp(batchnorm(), p, x, **kw),
        init=lambda spec, shape, rng: rules.init(batchnorm(), shape, rng),
        init_state=lambda spec, shape: rules.init_state(batchnorm(), shape),
        has_modes=True,
        per_sample=True,
    )
    params = fran.init(bn_liar(), (3,), 0, dtype=np.float64)
    x = np.random.default_rng(2).normal(size=(8, 3))
    # stateful: fran never cuts its training batches, so the claim is checked at inference only
    testing.check_per_sample(bn_liar(), params, x)
    # the same claim, stateless, is checked in training too
    registry.register(
        "bn_liar_stateless_v3",
        _stateless_bn(),
        vjp=lambda spec, p, x, **kw: _bn_training_only(p, x, **kw),
        init=lambda spec, shape, rng: rules.init(batchnorm(), shape, rng),
        has_modes=True,
        per_sample=True,
    )
    spec = registry.get("bn_liar_stateless_v3")()
    with pytest.raises(AssertionError, match=r"in training mode.*per_sample=\"inference\""):
        testing.check_per_sample(spec, params, x)


def _stateless_bn():
    @attrs.frozen
    class bn_stateless:
        pass

    return bn_stateless


def _bn_training_only(params, x, *, training):
    """Centred by the batch in training, by nothing at inference."""
    y = x - x.mean(axis=0) if training else x.copy()
    return y * params["gamma"] + params["beta"], None


def test_an_undeclared_per_sample_layer_is_hinted_that_it_may_declare(scratch_registry):
    @attrs.frozen
    class double:
        pass

    registry.register("double_v3", double, vjp=lambda spec, p, x: (2 * x, lambda d: ({}, 2 * d)))
    x = np.random.default_rng(1).normal(size=(4, 3))
    with pytest.warns(PerSampleHint, match="per_sample=True"):
        check_layer(double(), {}, x, rng=0)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (dense(3), (4,)),
        (conv2d(k=3, channels=2), (1, 5, 5)),
        (conv2d_transpose(k=2, channels=2, stride=2), (2, 3, 3)),
        (maxpooling(k=2), (2, 4, 4)),
        (flatten(), (2, 3, 3)),
        (softmax(), (5,)),
        (fran.activation("tanh"), (5,)),
        (dropout(0.4), (6,)),
        (residual([dense(4), fran.activation("tanh")]), (4,)),
    ],
)
def test_every_per_sample_builtin_declares_it_and_proves_it(spec, shape):
    assert registry.capabilities(spec).per_sample is True
    params = fran.init(spec, shape, 0, dtype=np.float64)
    x = np.random.default_rng(3).normal(size=(6, *shape))
    testing.check_per_sample(spec, params, x)


def test_batch_norm_is_per_sample_at_inference_only_and_trains_in_lockstep():
    caps = registry.capabilities(batchnorm())
    assert caps.per_sample == "inference" and caps.cut_in_inference
    assert caps.cut_in_training and caps.sums_batch  # through batch.sum (needs_batch)
    net = network([dense(4), batchnorm(), residual([dense(4), batchnorm()])])
    assert not engine.whole_batch(net) and engine.sums_batch(net)
    assert not engine.whole_batch_inference(net)
    params = fran.init(batchnorm(), (3,), 0, dtype=np.float64)
    testing.check_per_sample(batchnorm(), params, np.random.default_rng(0).normal(size=(8, 3)))


def test_an_undeclared_layer_is_computed_whole_at_inference_too(scratch_registry, monkeypatch):
    @attrs.frozen
    class centre:
        pass

    registry.register("centre_infer_v3", centre, vjp=_centre_vjp)
    model = fran.init_weights(network([flatten(), centre(), dense(3)], 0, 0), 4, 4)
    X = np.random.default_rng(0).normal(size=(64, 1, 4, 4)).astype(np.float32)
    outs = {}
    for threads in ("1", "4"):
        monkeypatch.setenv("FRAN_NUM_THREADS", threads)
        outs[threads] = fran.predict(model, X, batch_size=64)
    whole = fran.apply(model.spec, model.params, X)
    np.testing.assert_array_equal(outs["1"], outs["4"])
    np.testing.assert_allclose(outs["4"], whole, rtol=1e-6)


# ------------------------------------------------------------------ the registry's defaults


def test_only_vjp_is_required_and_the_rest_defaults(scratch_registry):
    @attrs.frozen
    class scale:
        pass

    registry.register("scale_v3", scale, vjp=lambda spec, p, x: (3 * x, lambda d: ({}, 3 * d)))
    rules = registry.rules_for(scale())
    assert rules.output_shape(scale(), (2, 5)) == (2, 5)
    assert fran.init(scale(), (2, 5)) == {}
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(fran.apply(scale(), {}, x), 3 * x)
    assert registry.capabilities(scale()) == registry.Capabilities(False, False, False, False)
    check_init(scale(), (3,), dtype=np.float64)


def test_a_stateful_layer_with_only_vjp_gets_an_apply_returning_its_state(scratch_registry):
    @attrs.frozen
    class counter:
        pass

    def vjp(spec, params, x, *, state):
        return x, (lambda d: ({}, d)), {"n": state["n"] + len(x)}

    registry.register("counter_v3", counter, vjp=vjp, init_state=lambda s, sh: {"n": np.zeros(1)})
    state = fran.init_state(counter(), (2,))
    y, new = fran.apply_with_state(counter(), {}, np.ones((3, 2)), state=state)
    assert new["n"][0] == 3 and y.shape == (3, 2)
    assert registry.capabilities(counter()).has_state


def test_old_keywords_still_register(scratch_registry):
    @attrs.frozen
    class old:
        pass

    def vjp(spec, p, x):
        return x, lambda d: ({}, d)

    registry.register(
        "old_v3",
        old,
        output_shape=lambda s, sh: tuple(sh),
        init=lambda s, sh, r: {},
        apply=lambda s, p, x: x,
        vjp=vjp,
        skips_input_grad=True,
        batchwise=True,
    )
    assert registry.rules_for(old()).per_sample is False
    assert "skips_input_grad" not in registry.LayerRules._fields

    @attrs.frozen
    class contradicts:
        pass

    with pytest.raises(ValueError, match="batchwise=True contradicts per_sample=True"):
        registry.register("contra_v3", contradicts, vjp=vjp, batchwise=True, per_sample=True)
    with pytest.raises(ValueError, match="per_sample must be True, False or 'inference'"):
        registry.register("contra_v3", contradicts, vjp=vjp, per_sample="yes")
    with pytest.raises(TypeError, match="vjp must be callable"):
        registry.register("contra_v3", contradicts)


# ------------------------------------------------------------------ combinators


def test_a_combinators_capabilities_are_those_of_the_layers_inside():
    plain = registry.capabilities(residual([dense(4), dense(4)]))
    assert plain == registry.Capabilities(False, False, False, True)
    assert plain.cut_in_training
    mixed = registry.capabilities(residual([dense(4), dropout(0.1)], shortcut=[batchnorm()]))
    assert mixed == registry.Capabilities(True, True, True, "inference", sums_batch=True)
    net = registry.capabilities(network([flatten(), residual([dense(4)]), dropout(0.2)]))
    assert net.needs_rng and net.has_modes and not net.has_state and net.per_sample is True
    assert not engine.random(network([flatten(), residual([dense(4)])]))


def test_a_plugin_block_is_per_sample_only_if_it_says_so_and_keeps_its_own_flags(
    scratch_registry,
):
    @attrs.frozen
    class block:
        layers: tuple

    def vjp(spec, params, x, *, training, rng):
        return engine.serial_vjp(spec.layers, params, x, None, rng, training)[:2]

    registry.register(
        "block_v3",
        block,
        init=lambda spec, shape, rng: engine.serial_init(spec.layers, shape, rng),
        output_shape=lambda spec, shape: engine.layer_shapes(spec.layers, shape)[-1],
        vjp=vjp,
        has_modes=True,
        needs_rng=True,
    )
    caps = registry.capabilities(block((dense(3),)))
    assert caps.needs_rng and caps.has_modes and caps.per_sample is False
    assert engine.whole_batch(network([block((dense(3),))]))
    # its apply (derived from vjp) gets the keywords it declared, in a network
    model = fran.init_weights(network([flatten(), block((dense(3), dropout(0.5)))], 0, 0), 2, 2)
    X = np.ones((8, 1, 2, 2), np.float32)
    assert fran.predict(model, X).shape == (8, 3)


def test_a_combinator_may_not_declare_modes_or_randomness(scratch_registry):
    @attrs.frozen
    class combo:
        layers: tuple

    with pytest.raises(ValueError, match="combinator takes has_modes and needs_rng"):
        registry.register(
            "combo_v3", combo, vjp=lambda *a, **k: None, combinator=True, needs_rng=True
        )


# ------------------------------------------------------------------ shape-only trees


SPECS = [
    network([conv2d(k=3, channels=4), batchnorm(), maxpooling(k=2), flatten(), dense(5)]),
    network(
        [
            conv2d(k=3, channels=4, padding=1),
            residual(
                [conv2d(k=3, channels=4, padding=1), batchnorm()],
                shortcut=[conv2d(k=1, channels=4)],
            ),
            conv2d_transpose(k=2, channels=2, stride=2),
            flatten(),
            dropout(0.2),
            dense(3),
            softmax(),
        ]
    ),
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_param_and_state_shapes_are_inits_without_memory(spec, dtype):
    from fran.tree import tree_items

    shape = (1, 8, 8)
    for made, told in (
        (fran.init(spec, shape, dtype=dtype), engine.param_shapes(spec, shape, dtype)),
        (fran.init_state(spec, shape, dtype), engine.state_shapes(spec, shape, dtype)),
    ):
        got = [(p, a.shape, a.dtype) for p, a in tree_items(told)]
        assert got == [(p, a.shape, a.dtype) for p, a in tree_items(made)]
        assert all(
            a.strides == (0,) * a.ndim and not a.flags.writeable for _, a in tree_items(told)
        )


def test_param_shapes_of_a_huge_layer_allocate_nothing():
    spec = network([flatten(), dense(10**12), batchnorm()])
    tracemalloc.start()
    try:
        params = engine.param_shapes(spec, (1, 4, 4))
        state = engine.state_shapes(spec, (1, 4, 4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert params[1]["w"].shape == (16, 10**12) and state[2]["mean"].shape == (10**12,)
    assert peak < 100_000, peak


def test_a_plugin_without_param_shapes_is_measured_by_a_shape_only_init(scratch_registry):
    @attrs.frozen
    class affine:
        n: int

    def init(spec, shape, rng):
        return {"w": rng.normal(size=(shape[0], spec.n)), "b": rng.uniform(size=spec.n)}

    registry.register(
        "affine_v3",
        affine,
        init=init,
        output_shape=lambda s, sh: (s.n,),
        vjp=lambda s, p, x: (x @ p["w"] + p["b"], None),
    )
    tracemalloc.start()
    try:
        told = engine.param_shapes(affine(10**11), (8,))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert told["w"].shape == (8, 10**11) and peak < 100_000


def test_check_init_catches_a_param_shapes_rule_that_lies(scratch_registry):
    @attrs.frozen
    class liar:
        pass

    registry.register(
        "liar_v3",
        liar,
        init=lambda s, sh, r: {"w": r.normal(size=(sh[0], 2))},
        param_shapes=lambda s, sh: {"w": (2, sh[0])},
        output_shape=lambda s, sh: (2,),
        vjp=lambda s, p, x: (x @ p["w"], None),
    )
    with pytest.raises(AssertionError, match="param_shapes gives"):
        check_init(liar(), (3,))


def test_no_module_reaches_into_anothers_private_names():
    """The fold's blocks are public: no `engine._x` (or registry's, io's...) across fran's modules."""
    import pathlib
    import re

    root = pathlib.Path(fran.__file__).parent
    pattern = re.compile(r"\b(engine|registry|model|io|train|testing|parallel|optim)\._[a-z]\w*")
    found = [
        f"{path.relative_to(root)}: {m.group(0)}"
        for path in sorted(root.rglob("*.py"))
        for m in pattern.finditer(path.read_text())
        if m.group(1) != path.stem
    ]
    assert found == []


# ------------------------------------------------------------------ the params check (issue 23)

LENET = network(
    [
        conv2d(k=5, channels=6, activation="tanh"),
        maxpooling(k=2, stride=2),
        conv2d(k=3, channels=16, activation="tanh"),
        maxpooling(k=2, stride=2),
        flatten(),
        dense(n_out=120, activation="tanh"),
        dense(n_out=84, activation="tanh"),
        dense(n_out=10, activation="tanh"),
        softmax(),
    ],
    0,
    0,
)


@pytest.fixture(scope="module")
def lenet():
    return fran.init_weights(LENET, 28, 28)


ENTRY_POINTS = {
    "fran.apply": lambda spec, p, x: fran.apply(spec, p, x),
    "fran.apply_with_state": lambda spec, p, x: fran.apply_with_state(spec, p, x),
    "fran.vjp": lambda spec, p, x: fran.vjp(spec, p, x),
    "fran.vjp_with_state": lambda spec, p, x: fran.vjp_with_state(spec, p, x),
}


@pytest.mark.parametrize("fn", sorted(ENTRY_POINTS))
def test_params_for_other_images_name_the_layer_and_both_shapes(lenet, fn):
    x = np.zeros((2, 1, 20, 20), np.float32)
    with pytest.raises(ValueError) as info:
        ENTRY_POINTS[fn](lenet.spec, lenet.params, x)
    message = str(info.value)
    assert message.startswith(f"{fn}: params[5]['w'] of layer 5 (dense(n_out=120, "), message
    assert "must be shape (144, 120)" in message and "found shape (400, 120)" in message, message
    assert "samples of shape (1, 20, 20)" in message


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        (None, ["params of the network must be a tuple of 9", "found None"]),
        ((), ["a tuple of 9", "found a tuple of 0"]),
        (
            lambda p: (*p[:5], {}, *p[6:]),
            [
                "params[5] of layer 5 (dense(n_out=120",
                "keys ['b', 'w']",
                "found a dict with keys []",
            ],
        ),
        (
            lambda p: (*p[:5], {"w": p[5]["w"].tolist(), "b": p[5]["b"]}, *p[6:]),
            ["params[5]['w']", "a float array of shape (400, 120)", "found a list of 400"],
        ),
    ],
)
def test_junk_params_name_what_was_expected_and_found(lenet, params, fragments):
    params = params(lenet.params) if callable(params) else params
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(ValueError) as info:
        fran.apply(lenet.spec, params, x)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_the_model_entry_points_check_params_and_state(lenet):
    bad = attrs.evolve(lenet, params=(*lenet.params[:5], {}, *lenet.params[6:]))
    X = np.zeros((4, 1, 28, 28), np.float32)
    y = np.zeros(4, int)
    calls = {
        "predict": lambda: fran.predict(bad, X),
        "evaluate_nn": lambda: fran.evaluate_nn(bad, X, y),
        "train_step": lambda: fran.train_step(fran.adam(1e-3), fran.cross_entropy, bad, (X, y)),
        "train_nn": lambda: fran.train_nn(bad, X, y),
    }
    for fn, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{fn}: params\[5\] of layer 5 \(dense"):
            call()
    model = fran.init_weights(network([flatten(), dense(3), batchnorm()], 0, 0), 2, 2)
    wrong = attrs.evolve(model, state=(*model.state[:2], {"mean": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match=r"predict: state\[2\] of layer 2 \(batchnorm\(\)\)"):
        fran.predict(wrong, np.zeros((2, 1, 2, 2), np.float32))


def test_a_single_layer_is_named_as_itself():
    with pytest.raises(
        ValueError, match=r"fran.apply: params\['w'\] of the layer dense\(n_out=3\)"
    ):
        fran.apply(dense(3), {"w": np.zeros((5, 3)), "b": np.zeros(3)}, np.zeros((2, 4)))


def test_the_params_check_derives_the_expected_shapes_once(lenet, monkeypatch):
    """Each call is a walk over the leaves: the shape-only trees are cached per (spec, shape).
    (Its cost is measured by benchmarks, not here: no test depends on timing.)"""
    engine.check_params("t", lenet.spec, lenet.params, lenet.input_shape, state=lenet.state)
    calls = []
    real = engine.layer_param_shapes
    monkeypatch.setattr(engine, "layer_param_shapes", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        engine.check_params("t", lenet.spec, lenet.params, lenet.input_shape, state=lenet.state)
        fran.apply(lenet.spec, lenet.params, np.zeros((1, 1, 28, 28), np.float32))
    assert calls == []
