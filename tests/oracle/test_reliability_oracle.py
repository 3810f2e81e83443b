"""The conv autoencoder trained step for step against PyTorch, and torch's init rule for
ConvTranspose2d checked in torch itself (the torch-free side: tests/test_mutations.py)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from test_torch_oracle import AUTOENCODER, RTOL, assert_close, fran_layout, torch_model

import fran
from fran.losses import mse

OPTIMIZERS = {
    "sgd": (
        lambda: fran.sgd(0.5, momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9),
    ),
    "adam": (lambda: fran.adam(1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_conv_autoencoder_trains_step_for_step_like_torch(name):
    """Three train_step calls on the conv autoencoder (two transposed convolutions) against
    torch's MSELoss and optimizer: the loss and every param after every step."""
    make_fran, make_torch = OPTIMIZERS[name]
    optimizer = make_fran()
    model = fran.init_weights(AUTOENCODER, 28, 28, seed=4, dtype=np.float64)
    model = attrs.evolve(model, opt_state=optimizer.init(model.params))
    x = np.random.default_rng(4).uniform(0.0, 1.0, (6, 1, 28, 28))
    net, named = torch_model(AUTOENCODER.layers, model.params, (1, 28, 28))
    opt_t = make_torch(net.parameters())
    x_t = torch.tensor(x)
    for step in range(3):
        model, value = fran.train_step(optimizer, mse, model, (x, x))
        opt_t.zero_grad()
        loss_t = torch.nn.MSELoss()(net(x_t), x_t)
        loss_t.backward()
        opt_t.step()
        assert value == pytest.approx(loss_t.item(), rel=RTOL)
        for i, (spec, p, tensors) in enumerate(
            zip(AUTOENCODER.layers, model.params, named, strict=True)
        ):
            for key, t in tensors.items():
                what = f"autoencoder step {step + 1} layer {i} ({spec!r}) {key}"
                assert_close(p[key], fran_layout(spec, key, t), what, 1e-8)


def test_conv_transpose_torch_init_follows_torch_fan_in():
    # torch computes fan_in from the weight's dimension 1 (C_out for ConvTranspose2d) times k^2
    module = torch.nn.ConvTranspose2d(16, 8, 2)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
    assert (fan_in, fan_out) == (8 * 2 * 2, 16 * 2 * 2)
    bound = fan_in**-0.5  # kaiming_uniform(a=sqrt(5)): sqrt(6 / ((1 + 5) fan_in)) = 0.177
    assert bound == pytest.approx(0.17678, abs=1e-5)
    assert module.weight.abs().max().item() <= bound and module.bias.abs().max().item() <= bound
    params = fran.init(
        fran.conv2d_transpose(2, 8, weight_init="torch"), (16, 5, 5), 0, dtype=np.float64
    )
    assert params["w"].shape == tuple(module.weight.shape)
    assert 0.97 * bound < np.abs(params["w"]).max() <= bound
    assert np.abs(params["b"]).max() <= bound
