"""Synchronised batch norm: a batch-norm network's training batch cut into lockstep pieces.

Batch norm sums over the batch through `batch.sum` (fran.registry: needs_batch), so fran cuts
its batches like any per-sample network's: the pieces run in lockstep, each sum added in piece
order. Checked here: pieces equal the whole batch to rounding (float64), any thread count gives
bitwise one model, the capabilities that decide it, fran.testing's proof of the claim (and its
failure for a layer that sums on its own), and an error in one piece ending the step, no hang.
"""

from __future__ import annotations

import hashlib
import threading

import attrs
import numpy as np
import pytest

import fran
from fran import engine, parallel, registry, testing
from fran.layers import batchnorm, conv2d, dense, dropout, flatten, maxpooling, residual, softmax
from fran.losses import cross_entropy
from fran.optim import adam, sgd
from fran.train import train_step
from fran.tree import tree_leaves


def _net(*, drop=False):
    return fran.network(
        [
            conv2d(k=3, channels=4, stride=1, activation="relu"),
            batchnorm(),
            maxpooling(k=2, stride=2),
            flatten(),
            *([dropout(0.2)] if drop else []),
            dense(n_out=8, activation="relu"),
            batchnorm(momentum=0.3),
            residual([dense(n_out=8, activation="relu"), batchnorm()]),
            dense(n_out=3),
            softmax(),
        ],
        0,
        0,
    )


def _data(n=96, dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 1, 8, 8)).astype(dtype), rng.integers(0, 3, n)


def _train(net, pieces, dtype=np.float64, steps=3, optimizer=None):
    X, y = _data(dtype=dtype)
    model = fran.init_weights(net, 8, 8, dtype=dtype)
    values = []
    for _ in range(steps):
        model, value = train_step(optimizer or sgd(0.1, momentum=0.9), cross_entropy, model,
                                  (X, y), pieces=pieces)  # fmt: skip
        values.append(value)
    return model, values


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(p) - q))) for p, q in zip(a, b, strict=True))


def _digest(model) -> str:
    leaves = tree_leaves((model.params, model.state, model.opt_state))
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in leaves)).hexdigest()


def test_a_batchnorm_network_is_cut_in_lockstep():
    net = _net()
    assert not engine.whole_batch(net) and engine.sums_batch(net)
    caps = registry.capabilities(batchnorm())
    assert caps.cut_in_training and caps.sums_batch and caps.has_state


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_pieces_equal_the_whole_batch_to_rounding(pieces):
    whole, whole_values = _train(_net(), 1)
    cut, cut_values = _train(_net(), pieces)
    assert np.allclose(cut_values, whole_values, rtol=0, atol=1e-13)
    leaves = tree_leaves
    assert _max_diff(leaves(cut.params), leaves(whole.params)) < 1e-12
    assert _max_diff(leaves(cut.state), leaves(whole.state)) < 1e-12  # running statistics
    assert _max_diff(leaves(cut.opt_state), leaves(whole.opt_state)) < 1e-12
    # and truly cut: the bits of a sum in pieces are not the whole batch's
    assert _digest(cut) != _digest(whole)


def test_the_whole_batch_running_statistics_by_hand():
    """One step's running mean/var of the first batch norm equal numpy's over the whole batch."""
    X, y = _data()
    model = fran.init_weights(_net(), 8, 8, dtype=np.float64)
    after, _ = train_step(sgd(0.1), cross_entropy, model, (X, y), pieces=3)
    conv = fran.apply(fran.network([_net().layers[0]], 0, 0), (model.params[0],), X)
    mu = conv.mean(axis=(0, 2, 3))
    var = conv.var(axis=(0, 2, 3)) * (conv[:, 0].size / (conv[:, 0].size - 1))
    assert np.allclose(after.state[1]["mean"], 0.1 * mu, rtol=1e-12, atol=1e-15)
    assert np.allclose(after.state[1]["var"], 0.9 + 0.1 * var, rtol=1e-12)


@pytest.mark.parametrize("drop", [False, True])
def test_any_thread_count_gives_bitwise_one_model(monkeypatch, drop):
    digests = set()
    for threads in ("1", "2", "3"):
        monkeypatch.setenv(parallel.ENV, threads)
        model, values = _train(_net(drop=drop), 3, np.float32, optimizer=adam(1e-2))
        digests.add((_digest(model), tuple(values)))
    assert len(digests) == 1


def test_check_layer_proves_the_claim_of_batchnorm_and_a_block():
    rng = np.random.default_rng(3)
    for spec, shape in ((batchnorm(), (6, 3, 4, 4)), (residual([dense(5), batchnorm()]), (8, 5))):
        params = fran.init(spec, shape[1:], 0, np.float64)
        testing.check_batch_sums(spec, params, rng.normal(size=shape))


@attrs.frozen
class localnorm:
    """A planted bug: declares needs_batch but centres by its own piece's mean."""


def _localnorm_vjp(spec, params, x, *, batch=registry.WHOLE_BATCH):
    centred = x - x.mean(axis=0)
    return centred, lambda dy: ({}, dy - dy.mean(axis=0))


registry.register("localnorm_test", localnorm, vjp=_localnorm_vjp, needs_batch=True)


def test_check_batch_sums_fails_a_layer_that_sums_on_its_own():
    with pytest.raises(AssertionError, match="needs_batch.*do not go through batch.sum|batch.sum"):
        testing.check_batch_sums(localnorm(), {}, np.random.default_rng(0).normal(size=(6, 3)))


@attrs.frozen
class frail:
    """Raises in the piece holding sample 0's value 1e6 (a planted failure in one piece)."""


def _frail_vjp(spec, params, x, *, batch=registry.WHOLE_BATCH):
    total = batch.sum(x.sum(axis=0))
    if np.any(x > 1e5):
        raise FloatingPointError("frail: a huge value")
    return x - total / 1000, lambda dy: ({}, dy)


registry.register("frail_test", frail, vjp=_frail_vjp, needs_batch=True, per_sample="inference")


def test_an_error_in_one_piece_ends_the_step_without_a_hang():
    net = fran.network([flatten(), frail(), dense(3), softmax()], 0, 0)
    model = fran.init_weights(net, 1, 4, dtype=np.float64)
    X, y = np.zeros((64, 1, 1, 4)), np.zeros(64, dtype=int)
    X[40, 0, 0, 0] = 1e6  # in the second of two pieces
    errors = []

    def step():
        try:
            train_step(sgd(0.1), cross_entropy, model, (X, y), pieces=2)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    t = threading.Thread(target=step, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "train_step hung after one piece failed"
    assert len(errors) == 1 and isinstance(errors[0], FloatingPointError), errors


@attrs.frozen
class oldblock:
    """A combinator that does not pass batch= on (registered without needs_batch)."""

    layers: tuple = attrs.field(converter=tuple)


def _oldblock_vjp(spec, params, x, *, state, training=False, rng=None):
    return engine.serial_vjp(spec.layers, params, x, state, rng, training)


registry.register(
    "oldblock_test",
    oldblock,
    vjp=_oldblock_vjp,
    init=lambda spec, shape, rng: engine.serial_init(spec.layers, shape, rng),
    init_state=lambda spec, shape: engine.serial_init_state(spec.layers, shape),
    output_shape=lambda spec, shape: engine.layer_shapes(spec.layers, shape)[-1],
    per_sample=True,
    combinator=True,
)


def test_a_combinator_that_does_not_pass_batch_on_is_computed_whole():
    net = fran.network([flatten(), oldblock((dense(4), batchnorm())), dense(3), softmax()], 0, 0)
    assert engine.whole_batch(net) and not engine.sums_batch(net)
    model = fran.init_weights(net, 1, 4, dtype=np.float64)
    X = np.random.default_rng(0).normal(size=(64, 1, 1, 4))
    y = np.arange(64) % 3
    a, _ = train_step(sgd(0.1), cross_entropy, model, (X, y), pieces=2)
    b, _ = train_step(sgd(0.1), cross_entropy, model, (X, y), pieces=1)
    assert _digest(a) == _digest(b)  # whole both times
