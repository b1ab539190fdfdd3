"""Optimizers with per-parameter learning rates, and depthwise gradient scaling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import widenet as wn
from widenet.dynamics.losses import mse
from widenet.dynamics.optim import (
    LayerPowerScaling,
    NormalizedUpdateScaling,
    Optimizer,
    build_optimizer,
    gd_step,
)
from widenet.parametrizations import MuP


def test_learning_rates_follow_the_parametrization() -> None:
    net = wn.MLP(4, [64, 32], 2, parametrization=MuP(base_hidden=16))
    for family, name in (("sgd", "sgd"), ("adam", "adam"), ("sgd", "gd")):
        optimizer = build_optimizer(net, name, 0.1)
        scales = net.lr_scales(family)
        assert {g["name"]: g["lr"] for g in optimizer.param_groups} == pytest.approx(
            {n: 0.1 * s for n, s in scales.items()})


def test_plain_modules_get_the_base_learning_rate() -> None:
    optimizer = build_optimizer(nn.Linear(3, 2), "sgd", 0.5, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5]
    assert optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(("call", "message"), [
    (lambda: build_optimizer(nn.Linear(3, 2), "rmsprop", 0.1), "unknown optimizer"),
    (lambda: build_optimizer(nn.Linear(3, 2), "sgd", 0.1, momentum=1.0), r"momentum must be in"),
    (lambda: build_optimizer(nn.Linear(3, 2), "adam", 0.1, momentum=0.5), "betas"),
    (lambda: build_optimizer(nn.Linear(3, 2).requires_grad_(False), "sgd", 0.1),
     "no trainable parameters")])
def test_bad_optimizer_arguments(call, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        call()


def gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad()
    wn.dynamics.losses.mse(net(x), y).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def test_layer_power_scaling_multiplies_by_the_layer_index() -> None:
    net = wn.MLP(3, [8, 8], 1, bias_std=0.1, dtype=torch.float64)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    plain = gradients(net, x, y)
    scaling = LayerPowerScaling(power=1.5)
    scaling.attach(net)
    gradients(net, x, y)
    factors = scaling.apply()
    assert factors == pytest.approx({"xi/layers.0": 1.0, "xi/layers.1": 2**1.5,
                                     "xi/layers.2": 3**1.5})
    for name, p in net.named_parameters():
        layer = int(name.split(".")[1])
        assert torch.allclose(p.grad, (layer + 1) ** 1.5 * plain[name])


def test_normalized_update_scaling_uses_forward_and_backward_rms() -> None:
    """xi_l = 1 / (rms(h_{l-1}) rms(dL/dz_l)), checked against hand-computed signals."""
    net = wn.MLP(3, [6], 2, "tanh", dtype=torch.float64)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    plain = gradients(net, x, y)
    z1 = net.layers[0](x)
    h1 = net.activation(z1)
    z2 = net.layers[1](h1)
    g2, g1 = torch.autograd.grad(wn.dynamics.losses.mse(z2, y), (z2, z1))
    rms = lambda t: float(t.detach().square().mean().sqrt())  # noqa: E731
    expected = [1 / (rms(x) * rms(g1)), 1 / (rms(h1) * rms(g2))]
    scaling = NormalizedUpdateScaling(eps=1e-300)
    scaling.attach(net)
    gradients(net, x, y)  # outside recording(): not observed
    with scaling.recording():
        gradients(net, x, y)
    assert list(scaling.apply().values()) == pytest.approx(expected, rel=1e-12)
    assert torch.allclose(net.layers[1].weight.grad, expected[1] * plain["layers.1.weight"])
    scaling.detach()
    assert not net.layers[0]._forward_hooks


def test_gd_step_is_one_step_of_the_training_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.cos(x[:, :1])
    net = wn.MLP(4, [16, 8], 1, parametrization=MuP(base_hidden=4), seed=1, dtype=torch.float64)
    stepped, trained = wn.MLP(4, [16, 8], 1, parametrization=MuP(base_hidden=4), seed=1,
                              dtype=torch.float64), wn.MLP(4, [16, 8], 1,
                                                           parametrization=MuP(base_hidden=4),
                                                           seed=1, dtype=torch.float64)
    values = [gd_step(stepped, x, y, lr=0.2, loss_scale=0.5) for _ in range(3)]
    history = wn.train(trained, x, y, lr=0.2, steps=3, loss_scale=0.5, log_every=1).history
    assert values == history["loss"].iloc[:3].tolist()
    for p, q in zip(stepped.parameters(), trained.parameters(), strict=True):
        assert torch.equal(p, q)
        assert p.grad is None
    # against the formula theta_p - lr * scale_p * d(0.5 L)/d theta_p with muP's scales
    names, parameters = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(0.5 * mse(net(x), y), parameters)
    scales = net.lr_scales("sgd")
    expected = {n: p - 0.2 * scales[n] * g for n, p, g in zip(names, parameters, grads,
                                                               strict=True)}
    gd_step(net, x, y, lr=0.2, loss_scale=0.5)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"name": "lbfgs"}, "unknown optimizer"), ({"name": "sgd", "momentum": 1.0}, "in \\[0, 1\\)"),
    ({"name": "gd", "momentum": 0.5}, "plain gradient descent"),
    ({"name": "adam", "momentum": 0.5}, "betas"), ({"batch_size": 0}, "batch_size must be"),
    ({"gradient_scaling": 2.0}, "GradientScaling"),
])
def test_bad_optimizer_specs(arguments: dict, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        Optimizer(**arguments)


def test_gd_step_bad_arguments() -> None:
    x = torch.randn(3, 2)
    with pytest.raises(wn.WidenetError, match="lr must be"):
        gd_step(nn.Linear(2, 1), x, x[:, :1], lr=0.0)
    with pytest.raises(wn.WidenetError, match="loss_scale must be"):
        gd_step(nn.Linear(2, 1), x, x[:, :1], lr=0.1, loss_scale=-1.0)
