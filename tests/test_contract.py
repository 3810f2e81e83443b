"""Contract v2: modes, randomness and state, end to end through Model, train_step and the files.

The layer-level properties (both modes, keys, state) are checked for every registered layer by
tests/test_layers.py through fran.testing; here the network fold, training and files.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest

import fran
from fran import registry
from fran.layers import activation, batchnorm, dropout, residual
from fran.tree import tree_items, tree_leaves

DATA = Path(__file__).resolve().parent / "data"


def _mixed() -> fran.network:
    """Today's layers, the unchanged avgpool plugin, and layers with randomness and state."""
    return fran.network(
        [
            fran.conv2d(k=3, channels=4),
            batchnorm(),
            activation("relu"),
            residual([fran.conv2d(k=3, channels=4, padding=1), batchnorm(), dropout(0.25)]),
            residual(
                [fran.conv2d(k=3, channels=6, stride=2, padding=1), batchnorm()],
                shortcut=[fran.conv2d(k=1, channels=6, stride=2), batchnorm()],
            ),
            registry.get("avgpooling")(k=2),
            fran.flatten(),
            dropout(0.5),
            fran.dense(3),
            fran.softmax(),
        ],
        0,
        0,
    )


def _data(n=96, side=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, side, side)).astype(np.float32) + y[:, None, None]
    return X, y


def _equal_trees(a, b) -> bool:
    ia, ib = list(tree_items(a)), list(tree_items(b))
    return [p for p, _ in ia] == [p for p, _ in ib] and all(
        np.array_equal(x, y) for (_, x), (_, y) in zip(ia, ib, strict=True)
    )


def test_mixed_network_trains_evaluates_saves_and_loads(tmp_path):
    X, y = _data()
    model = fran.init_weights(_mixed(), 12, 12)
    assert [s for s in model.state if s] and model.opt_state is None
    start = fran.evaluate_nn(model, X, y)
    for _ in range(3):
        model = fran.train_nn(model, X, y, batch_size=32)
    after = fran.evaluate_nn(model, X, y)
    assert after["loss"] < start["loss"]
    assert not _equal_trees(model.state, fran.init_weights(_mixed(), 12, 12).state)
    assert (model.epoch, model.step) == (3, 9)
    fran.save(tmp_path / "m.npz", model)
    again = fran.load(tmp_path / "m.npz")
    assert again == model
    assert fran.evaluate_nn(again, X, y) == after  # inference: running statistics, no dropout
    assert fran.evaluate_nn(model, X, y) == after  # and deterministic


def test_train_step_works_on_a_fresh_model():
    X, y = _data(32)
    model = fran.init_weights(_mixed(), 12, 12)
    new, loss = fran.train_step(fran.adam(1e-3), fran.cross_entropy, model, (X[:, None], y))
    assert np.isfinite(loss) and new.step == 1 and new.opt_state is not None
    assert model.step == 0 and model.opt_state is None  # the old model is untouched


def test_dropout_masks_follow_seed_and_step():
    X, y = _data(32)
    net = fran.network([fran.flatten(), dropout(0.5), fran.dense(3), fran.softmax()], 0, 0)
    model = fran.init_weights(net, 12, 12)
    step = lambda m: fran.train_step(fran.sgd(0.1), fran.cross_entropy, m, (X[:, None], y))  # noqa: E731
    a, b = step(model), step(model)
    assert _equal_trees(a[0].params, b[0].params)  # same seed, same step: the same mask
    later = step(attrs.evolve(model, step=7))
    other = step(attrs.evolve(model, seed=1))
    assert not _equal_trees(a[0].params, later[0].params)
    assert not _equal_trees(a[0].params, other[0].params)


@pytest.mark.parametrize("threads", ["2", "4"])
def test_batch_statistics_do_not_depend_on_the_thread_count(monkeypatch, threads):
    X, y = _data(64)
    model = fran.init_weights(_mixed(), 12, 12)
    monkeypatch.setenv("FRAN_NUM_THREADS", "1")
    one = fran.train_nn(model, X, y, batch_size=64)
    monkeypatch.setenv("FRAN_NUM_THREADS", threads)
    many = fran.train_nn(model, X, y, batch_size=64)
    assert one == many  # bitwise: fixed pieces in lockstep, each batch sum added in piece order


def _winograd_net() -> fran.network:
    """3x3 convolutions with 32 channels: the second takes Winograd's kernel (in 4 blocks)."""
    return fran.network(
        [
            fran.conv2d(k=3, channels=32, activation="relu"),
            batchnorm(),
            fran.conv2d(k=3, channels=32, padding=1),
            dropout(0.25),
            fran.flatten(),
            fran.dense(3),
            fran.softmax(),
        ],
        0,
        0,
    )


@pytest.mark.parametrize("net", [_mixed, _winograd_net])
@pytest.mark.parametrize("threads", ["2", "3"])
def test_products_cut_for_threads_keep_their_bits(monkeypatch, threads, net):
    """In a whole batch every product big enough is cut into pieces for fran's threads; the
    pieces depend on shapes only, so the result is bitwise the one-thread result, and close to
    the uncut products'. PIECE_MACS = 1 cuts every product here, even this small network's;
    pieces=1 computes each batch whole (one piece)."""
    import importlib
    import threading

    gemm = importlib.import_module("fran.layers._gemm")
    X, y = _data(64)
    model = fran.init_weights(net(), 12, 12)
    monkeypatch.setenv("FRAN_NUM_THREADS", "1")
    uncut = fran.train_nn(model, X, y, batch_size=64, pieces=1)
    monkeypatch.setattr(gemm, "PIECE_MACS", 1)
    one = fran.train_nn(model, X, y, batch_size=64, pieces=1)
    monkeypatch.setenv("FRAN_NUM_THREADS", threads)
    workers, real = set(), fran.parallel._executor

    class Together:
        """The pool, its tasks of one map held at a barrier until all have started: so they
        run on as many threads as there are tasks, whatever the scheduler (a quick first task
        would otherwise free its thread for the next one)."""

        def __init__(self, n):
            self.pool = real(n)

        def map(self, fn, tasks):
            tasks = list(tasks)
            barrier = threading.Barrier(len(tasks), timeout=60)

            def task(t):
                barrier.wait()  # a BrokenBarrierError here: the tasks did not run at once
                workers.add(threading.current_thread().name)
                return fn(t)

            return self.pool.map(task, tasks)

    monkeypatch.setattr(fran.parallel, "_executor", Together)
    many = fran.train_nn(model, X, y, batch_size=64, pieces=1)
    assert len({w for w in workers if w.startswith("fran")}) >= 2  # really on several threads
    assert one == many
    for a, b in zip(tree_leaves(uncut.params), tree_leaves(one.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_whole_batch_is_decided_by_the_layers_inside():
    assert not fran.engine.whole_batch(fran.network([fran.flatten(), fran.dense(3)]))
    # dropout is cut since issue 22: each piece draws its mask from its own key
    assert not fran.engine.whole_batch(fran.network([fran.flatten(), dropout(0.1)]))
    # batch norm is cut since synchronised batch norm: its sums go through batch.sum
    assert not fran.engine.whole_batch(fran.network([fran.flatten(), dropout(0.1), batchnorm()]))
    assert not fran.engine.whole_batch(fran.network([residual([batchnorm()])]))
    assert fran.engine.sums_batch(fran.network([residual([batchnorm()])]))
    assert not fran.engine.whole_batch(fran.network([residual([fran.dense(5)])]))


def test_input_gradient_in_inference_mode():
    """A saliency map: d loss / d input of a trained model, with running statistics."""
    X, y = _data(32)
    model = fran.train_nn(fran.init_weights(_mixed(), 12, 12), X, y, batch_size=32)
    x = X[:4, None].astype(np.float32)
    logits, pullback = fran.vjp(
        fran.network(model.spec.layers[:-1]), model.params[:-1], x, state=model.state[:-1]
    )
    _, dlogits = fran.cross_entropy.fn(logits, y[:4])
    _, saliency = pullback(dlogits)
    assert saliency.shape == x.shape and np.abs(saliency).sum() > 0
    eps = 1e-2  # the directional derivative agrees with the inference-mode forward (float32)
    v = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)

    def loss_at(t):
        z = fran.apply(
            fran.network(model.spec.layers[:-1]), model.params[:-1], x + t * v,
            state=model.state[:-1],
        )  # fmt: skip
        return fran.cross_entropy.fn(z.astype(np.float64), y[:4])[0]

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert float(np.vdot(saliency, v)) == pytest.approx(numeric, rel=0.05, abs=1e-4)


def test_stateful_layer_without_state_is_a_clear_error():
    params = fran.init(batchnorm(), (3,))
    with pytest.raises(ValueError, match="carries state"):
        fran.apply(batchnorm(), params, np.ones((4, 3)))


def test_batchnorm_refuses_one_value_per_channel_in_training():
    spec = batchnorm()
    state = fran.init_state(spec, (3,))
    with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
        fran.apply(spec, fran.init(spec, (3,)), np.ones((1, 3)), state=state, training=True)
    y = fran.apply(spec, fran.init(spec, (3,)), np.ones((1, 3)), state=state)  # inference is fine
    assert y.shape == (1, 3)


def test_residual_branch_mismatch_fails_at_init_weights():
    block = residual([fran.conv2d(k=3, channels=4)])  # no padding: 12x12 -> 10x10
    with pytest.raises(ValueError, match=r"\(4, 10, 10\).*\(1, 12, 12\)"):
        fran.init_weights(fran.network([block, fran.flatten(), fran.dense(2)]), 12, 12)


def test_dropout_and_friends_validate_their_fields():
    for bad in (dict(rate=1.0), dict(rate=-0.1), dict(rate="0.5")):
        with pytest.raises(ValueError, match="dropout: rate"):
            dropout(**bad)
    with pytest.raises(ValueError, match="batchnorm: momentum"):
        batchnorm(momentum=1.5)
    with pytest.raises(ValueError, match="batchnorm: eps"):
        batchnorm(eps=0)
    with pytest.raises(ValueError, match="activation"):
        activation("swish")
    with pytest.raises(ValueError, match="residual: layers"):
        residual([])


def test_counters_belong_to_the_model():
    model = fran.init_weights(fran.network([fran.flatten(), fran.dense(2)], 2, 5), 3, 3)
    assert (model.epoch, model.step) == (2, 5)  # network([...], epoch, step) starts them
    X, y = _data(20, side=3)
    model = fran.train_nn(model, X, y % 2, batch_size=10, loss="cross_entropy")
    assert (model.epoch, model.step) == (3, 7)


def test_summary_counts_trainable_and_state():
    model = fran.init_weights(_mixed(), 12, 12)
    text = fran.summary(model)
    n_state = sum(a.size for _, a in tree_items(model.state))
    assert f"non-trainable (state): {n_state:,}" in text and n_state == 2 * (4 + 4 + 6 + 6)


def test_models_compare_by_value():
    a = fran.init_weights(_mixed(), 12, 12)
    assert a == fran.init_weights(_mixed(), 12, 12)
    assert a != fran.init_weights(_mixed(), 12, 12, seed=1)
    assert a != attrs.evolve(a, step=1)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_files_of_format_v1_still_load(name):
    """Files written by fran 0.1.0 before contract v2 (tests/data, kept as they were written)."""
    model = fran.load(DATA / f"v1_{name}.npz")
    assert (model.epoch, model.step) == (1, 3)
    assert all(s == {} for s in model.state)
    x = np.load(DATA / "v1_inputs.npy")
    np.testing.assert_array_equal(fran.predict(model, x), np.load(DATA / f"v1_{name}_predict.npy"))
    X, y = _data(40, side=6)
    optimizer = fran.adam(1e-3) if name == "adam" else fran.sgd(0.1, momentum=0.9)
    more = fran.train_nn(model, X, y % 3, optimizer=optimizer, batch_size=16)
    assert more.step == 6 and type(more.opt_state) is type(model.opt_state)


@pytest.mark.parametrize(
    "optimizer",
    [
        fran.chain(fran.clip_by_global_norm(1.0), fran.adam(1e-3)),
        fran.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
        fran.adamw(),
        fran.rmsprop(momentum=0.9),
        fran.adadelta(),
    ],
    ids=lambda o: o.name.split("(")[0],
)
def test_every_optimizer_state_round_trips_through_a_checkpoint(tmp_path, optimizer):
    X, y = _data(48)
    model = fran.train_nn(
        fran.init_weights(_mixed(), 12, 12), X, y, optimizer=optimizer, batch_size=16
    )
    fran.save_checkpoint(tmp_path, model, metadata={"k": 1})
    loaded, meta = fran.load_checkpoint(tmp_path)
    assert loaded == model and meta == {"k": 1}
    a = fran.train_nn(loaded, X, y, optimizer=optimizer, batch_size=16)
    b = fran.train_nn(model, X, y, optimizer=optimizer, batch_size=16)
    assert a == b  # bitwise: the state resumed exactly
