"""The peer twins in tests/helpers/peer_twins.py do exactly what fran's three peer examples do.

For each network (examples/pytorch_mnist.py, keras_mnist.py, resnet_fmnist.py), fran's model
(EXAMPLE.build(), init_weights(scheme="torch"), float64) is copied into its PyTorch twin
(peers.TORCH_NETS; dense weights transposed, batchnorm gamma/beta and running statistics), the
twin's dropout layers are fed the very masks fran drew, and then in float64:
- the loss and the gradient of every param of one batch in training mode are the same;
- three epochs of two steps each (a full batch and a partial one: the last batch of an epoch is
  smaller), fran's train_nn with the example's optimizer (EXAMPLE.optimizer: its schedule and
  clipping) against peers.torch_epoch with peers.torch_optimizer, on the same batches in the same
  order (train_nn's shuffle), give the same loss at every step, the same params and the same
  batchnorm running statistics.
Then the rest that can differ between the two: the initial distributions (every U(-a, a) bound
fran draws against the bounds torch's own reset_parameters draws, layer by layer), the dropout
rates and their semantics, and the validation split. The data are MNIST-shaped synthetic images
(a zero background, so max-pooling meets ties as on MNIST), with pytorch_mnist's normalisation.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from helpers import peer_twins as peers
from torch import nn

import fran
import fran.data
from fran import registry, train

torch.set_num_threads(1)

NAMES = peers.NETWORKS
BATCH, N, EPOCHS = 16, 29, 3  # 2 steps per epoch (16 + 13 images), 6 steps in all
TOL = 1e-8  # relative, in float64 (the measured differences are ~1e-14)


# ---------------------------------------------------------------- helpers


def fran_model(name: str) -> fran.Model:
    ex = peers.MODULES[name].EXAMPLE
    return fran.init_weights(ex.build(), 28, 28, scheme="torch", seed=0, dtype=np.float64)


pairs = peers.twin_pairs  # [(fran layer, its params in torch layout, its state, the module)]


def twin(name: str, model: fran.Model, masks: list) -> nn.Module:
    """The PyTorch twin in float64 holding fran's params, its dropouts fed fran's masks; it
    refuses (ValueError) a twin whose dropout rates differ from fran's."""
    return peers.fed_twin(name, model, masks)


@pytest.fixture
def masks() -> list:
    """The dropout masks (already scaled by 1 / (1 - rate)) fran draws, in order."""
    with peers.recorded_masks() as drawn:
        yield drawn


def rel(a, b, scale: float = 0.0) -> float:
    """max |a - b| / max(max |b|, scale): the difference relative to the tensor's size, or to
    `scale` for a tensor far smaller (a gradient that is zero but for rounding, such as a conv
    bias's before a batchnorm)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), scale, 1e-300))


def compare(name: str, model: fran.Model, net: nn.Module, params, what: str) -> float:
    """The largest relative difference of `params` (fran's, a params-shaped tree: params or
    gradients) against the twin's (params, or their .grad for what="grad"); a tensor is measured
    against at least 1e-4 of the largest element of them all (a conv bias before a batchnorm has
    a gradient of zero but for rounding: ~1e-13 of the largest in torch, ~1e-15 in fran)."""
    found = [
        (layer, key, value, getattr(m, key).grad if what == "grad" else getattr(m, key))
        for layer, p, _, m in pairs(model, net, params)
        for key, value in p.items()
    ]
    scale = 1e-4 * max(float(t.detach().abs().max()) for *_, t in found)
    worst = 0.0
    for layer, key, value, t in found:
        d = rel(value, t.detach().numpy(), scale)
        assert d < TOL, f"{layer!r} {key} {what}: relative difference {d:.3g}"
        worst = max(worst, d)
    return note(name, what, worst)


WORST: dict = {}  # (network, what) -> the largest relative difference seen


def note(name: str, what: str, d: float) -> float:
    assert d < TOL, f"{name} {what}: relative difference {d:.3g}"
    WORST[name, what] = max(WORST.get((name, what), 0.0), d)
    return d


@pytest.fixture(scope="module", autouse=True)
def _print_differences():
    """With pytest -s: the largest relative differences, network by network."""
    yield
    for (name, what), d in sorted(WORST.items()):
        print(f"\n{name:14s} {what:24s} max relative difference {d:.2e}", end="")


# ---------------------------------------------------------------- the same work, step by step


@pytest.mark.parametrize("name", NAMES)
def test_the_twin_has_the_same_loss_and_gradients(name, masks):
    model = fran_model(name)
    X, y = peers.synthetic_images(name, BATCH)
    body, cut = train.loss_head(model.spec, fran.cross_entropy)
    n = len(model.params) - cut
    out, pullback, _ = fran.vjp_with_state(
        body,
        model.params[:n],
        X,
        state=model.state[:n],
        key=train.training_key(model),
        training=True,
    )
    value, dy = fran.cross_entropy.fn(out, y)
    grads, _ = pullback(dy, input_grad=False)

    net = twin(name, model, masks)
    net.train()
    loss = nn.CrossEntropyLoss()(net(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    assert not masks  # every mask fran drew was used, once
    note(name, "loss", rel(value, loss.item()))
    compare(name, model, net, (*grads, *({},) * cut), "grad")


@pytest.mark.parametrize("name", NAMES)
def test_the_twin_trains_the_same(name, masks):
    """Three epochs of train_nn against peers.torch_epoch, from the same params, on the same
    batches: the same loss at every step, the same params and running statistics after."""
    ex = peers.MODULES[name]
    X, y = peers.synthetic_images(name, N)
    steps = -(-N // BATCH)
    model = fran_model(name)
    args = argparse.Namespace(lr=ex.EXAMPLE.lr, epochs=EPOCHS)
    optimizer = ex.EXAMPLE.optimizer(args, steps)  # as peers.fran_run
    fran_losses: list = []
    net = twin(name, model, masks)  # the masks are drawn below; the twin uses them after
    for _ in range(EPOCHS):
        model = fran.train_nn(
            model,
            X,
            y,
            optimizer=optimizer,
            batch_size=BATCH,
            on_batch=lambda i, v: fran_losses.append(v),
        )

    opt, lr, clip = peers.torch_optimizer(name, net.parameters(), steps, EPOCHS)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    step, torch_losses = 0, []
    for epoch in range(EPOCHS):
        order = np.random.default_rng([model.seed, epoch]).permutation(N)  # train_nn's shuffle
        step, losses = peers.torch_epoch(
            net, opt, lr, clip, Xt, yt, torch.from_numpy(order), BATCH, step
        )
        torch_losses += losses
    assert not masks
    assert step == model.step == EPOCHS * steps
    note(name, "loss at every step", rel(fran_losses, torch_losses))
    np.testing.assert_allclose(fran_losses, torch_losses, rtol=TOL)
    compare(name, model, net, model.params, f"params after {step} steps")
    for _, _, s, m in pairs(model, net):
        if s:
            note(name, "running mean", rel(s["mean"], m.running_mean.numpy()))
            note(name, "running var", rel(s["var"], m.running_var.numpy()))


# ---------------------------------------------------------------- the rest that can differ


class BoundsRng:
    """A stand-in Generator that records every uniform(low, high, size) fran's init asks for."""

    def __init__(self, record: list):
        self.record = record

    def spawn(self, n: int) -> list:
        return [BoundsRng(self.record) for _ in range(n)]

    def uniform(self, low, high, size):
        self.record.append((tuple(np.atleast_1d(size)), low, high))
        return np.zeros(size)

    def normal(self, loc, scale, size):
        raise AssertionError("the torch scheme draws no normal")


@pytest.mark.parametrize("name", NAMES)
def test_the_initial_distributions_are_torchs(name, monkeypatch):
    """Every U(-a, a) fran's init draws (layer by layer, weights then biases) has the bounds
    torch's reset_parameters draws for the twin (kaiming_uniform(a=sqrt 5) weights,
    U(+-1/sqrt(fan_in)) biases); batchnorm starts at gamma 1, beta 0, mean 0, var 1 in both."""
    spec = fran_model(name).spec
    fran_draws: list = []
    registry.rules_for(spec).init(spec, (1, 28, 28), BoundsRng(fran_draws))
    torch_draws: list = []
    uniform_ = torch.Tensor.uniform_

    def recording(self, a=0.0, b=1.0, *rest, **kw):
        torch_draws.append((tuple(self.shape), a, b))
        return uniform_(self, a, b, *rest, **kw)

    monkeypatch.setattr(torch.Tensor, "uniform_", recording)
    net = peers.TORCH_NETS[name]()
    monkeypatch.undo()
    assert len(fran_draws) == len(torch_draws)
    for (shape, low, high), (t_shape, t_low, t_high) in zip(fran_draws, torch_draws, strict=True):
        assert shape in (t_shape, t_shape[::-1])  # dense (in, out) against Linear (out, in)
        assert low == pytest.approx(t_low, rel=1e-12) and high == pytest.approx(t_high, rel=1e-12)
    model = fran_model(name)
    for layer, p, s, m in pairs(model, net):
        if isinstance(layer, fran.batchnorm):
            for mine, theirs in ((p["weight"], m.weight), (p["bias"], m.bias)):
                np.testing.assert_array_equal(mine, theirs.detach().numpy())
            np.testing.assert_array_equal(s["mean"], m.running_mean.numpy())
            np.testing.assert_array_equal(s["var"], m.running_var.numpy())


def test_dropout_drops_the_same_fraction_with_the_same_scale():
    """rate is the drop probability in both, the survivors scaled by 1 / (1 - rate)."""
    x = np.ones((200, 1000))
    torch.manual_seed(0)
    for rate in (0.25, 0.5):
        y = fran.apply(fran.dropout(rate), {}, x, key=0, training=True)
        t = nn.Dropout(rate).train()(torch.from_numpy(x)).numpy()
        for out in (y, t):
            assert set(np.unique(out)) == {0.0, 1 / (1 - rate)}
            sigma = (rate * (1 - rate) / x.size) ** 0.5
            assert abs((out == 0).mean() - rate) < 5 * sigma


def test_a_twin_with_other_dropout_rates_is_refused(monkeypatch):
    def other():
        net = peers.torch_keras_mnist()
        net[7] = nn.Dropout(0.4)
        return net

    monkeypatch.setitem(peers.TORCH_NETS, "keras_mnist", other)
    with pytest.raises(ValueError, match="dropout rates differ"):
        peers.fed_twin("keras_mnist", fran_model("keras_mnist"), [])
