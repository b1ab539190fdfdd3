"""Optimizers with per-parameter learning rates, and depthwise gradient scaling."""

from __future__ import annotations

import math
import warnings

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


@pytest.mark.parametrize(("given", "name"), [("Adam", "adam"), ("SGD", "sgd"), ("GD", "gd")])
def test_optimizer_names_are_read_in_any_case(given: str, name: str) -> None:
    assert Optimizer(given).name == name
    net = wn.MLP(3, [4], 1, seed=0)
    built = build_optimizer(net, given, 0.1)
    assert isinstance(built, torch.optim.Adam if name == "adam" else torch.optim.SGD)


# --- torch optimizer objects and factories in train ---------------------------------------

def _regression(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return x, torch.cos(x.sum(1, keepdim=True))


def _net(seed: int = 0) -> wn.MLP:
    return wn.MLP(3, [16], 1, "tanh", bias_std=0.1, seed=seed, dtype=torch.float64)


def test_an_adam_object_trains_step_for_step_like_the_adam_spec() -> None:
    """torch.optim.Adam(model.parameters(), lr) and optimizer="Adam" (any case) at that lr are
    the same updates for a net whose parametrization scales no learning rate (NTK)."""
    x, y = _regression()
    by_name, by_object = _net(), _net()
    named = wn.train(by_name, x, y, lr=0.01, steps=8, log_every=1, optimizer="ADAM")
    built = wn.train(by_object, x, y, steps=8, log_every=1,
                     optimizer=torch.optim.Adam(by_object.parameters(), lr=0.01))
    for p, q in zip(by_name.parameters(), by_object.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-14)
    assert built.history["loss"].tolist() == pytest.approx(named.history["loss"].tolist(),
                                                           rel=1e-12)
    assert (built.history["lr"] == 0.01).all()
    assert built.history["loss"].iloc[-1] < built.history["loss"].iloc[0]


def test_a_factory_and_an_sgd_object_match_the_momentum_spec() -> None:
    """A factory gets the model's trainable parameters; monitors see the object's name,
    momentum and first group's learning rate."""
    x, y = _regression()
    seen = []

    class Looking(wn.diagnostics.WeightMovementMonitor):
        def measure(self, state):
            seen.append((state.optimizer, state.momentum, state.lr))
            return super().measure(state)

    spec, factory = _net(), _net()
    wn.train(spec, x, y, lr=0.05, steps=6, optimizer=wn.Optimizer("sgd", momentum=0.9))
    wn.train(factory, x, y, steps=6, monitors=[Looking()],
             optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
    for p, q in zip(spec.parameters(), factory.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-14)
    assert set(seen) == {("sgd", 0.9, 0.05)}


def test_an_object_on_some_of_the_parameters_trains_only_those() -> None:
    x, y = _regression()
    model = _net()
    first = model.layers[0].weight.detach().clone()
    wn.train(model, x, y, steps=3, optimizer=torch.optim.SGD(model.layers[-1].parameters(),
                                                             lr=0.1))
    assert torch.equal(model.layers[0].weight, first)


def test_optimizer_objects_and_factories_are_checked() -> None:
    x, y = _regression()
    model = _net()
    other = torch.optim.Adam(_net(seed=1).parameters())
    with pytest.raises(wn.WidenetError, match="not the model's") as error:
        wn.train(model, x, y, steps=1, optimizer=other)
    assert "\n" not in str(error.value)
    assert "Parameter Group" not in str(error.value)
    with pytest.raises(wn.WidenetError, match="carries its own learning rates"):
        wn.train(model, x, y, lr=0.1, steps=1, optimizer=torch.optim.SGD(model.parameters(),
                                                                         lr=0.1))
    with pytest.raises(wn.WidenetError, match="factory returned a int"):
        wn.train(model, x, y, steps=1, optimizer=lambda params: 5)
    with pytest.raises(wn.WidenetError, match=r"callable\(params\) -> Optimizer, got int"):
        wn.train(model, x, y, lr=0.1, steps=1, optimizer=42)
    with pytest.raises(wn.WidenetError, match="lr is required"):
        wn.train(model, x, y, steps=1, optimizer="sgd")
    with pytest.raises(wn.WidenetError, match="got a Adam") as error:
        Optimizer(torch.optim.Adam(model.parameters()))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("rate", [math.nan, math.inf, -0.1])
def test_an_optimizer_object_with_a_rate_that_is_not_finite_or_negative_is_refused(
        rate: float) -> None:
    """torch's SGD takes lr=nan and inf (and a group's rate may be changed after it was
    built); the first step would write NaN into the model (the run then reported as
    diverged). Refused before training, the model untouched."""
    x, y = _regression()
    model = _net()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD([
        {"params": [model.layers[0].weight]},
        {"params": [p for n, p in model.named_parameters() if n != "layers.0.weight"]}],
        lr=0.1)
    optimizer.param_groups[1]["lr"] = rate
    with pytest.raises(wn.WidenetError, match=r"the SGD optimizer's learning rate \(group 1\) "
                       r"must be"):
        wn.train(model, x, y, steps=2, optimizer=optimizer)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_an_optimizer_object_resumes_from_a_weights_only_checkpoint(tmp_path) -> None:
    """Its state dict (Adam's moments and step counts) is saved and restored; the fingerprint
    names its class and group settings, so another learning rate is refused."""
    x, y = _regression()
    path = tmp_path / "adam.pt"
    whole = _net()
    expected = wn.train(whole, x, y, steps=6, log_every=2,
                        optimizer=torch.optim.Adam(whole.parameters(), lr=0.02))
    first = _net()
    wn.train(first, x, y, steps=3, log_every=2, checkpoint=wn.Checkpoint(path, every=3),
             optimizer=torch.optim.Adam(first.parameters(), lr=0.02))
    content = torch.load(path, weights_only=True)
    assert content["fingerprint"]["optimizer"] == "torch.optim.adam.Adam"
    assert "group 0: lr=0.02" in content["fingerprint"]["optimizer groups"]
    assert content["optimizer"]["state"]  # Adam's moments are in the file
    resumed_net = _net(seed=3)
    resumed = wn.train(resumed_net, x, y, steps=6, log_every=2,
                       checkpoint=wn.Checkpoint(path, every=3, resume=True),
                       optimizer=torch.optim.Adam(resumed_net.parameters(), lr=0.02))
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed_net.parameters(),
                                                 strict=True))
    assert resumed.history.equals(expected.history)
    other = _net()
    with pytest.raises(wn.WidenetError, match=r"\(optimizer groups: group 0: lr=0.02 in the "
                                              r"checkpoint, group 0: lr=0.03 here\)"):
        wn.train(other, x, y, steps=6, log_every=2,
                 checkpoint=wn.Checkpoint(path, every=3, resume=True),
                 optimizer=torch.optim.Adam(other.parameters(), lr=0.03))


def _mup_net(parametrization=None) -> wn.MLP:
    return wn.MLP(3, [16, 8], 1, parametrization=parametrization or MuP(base_hidden=4), seed=0,
                  dtype=torch.float64)


@pytest.mark.parametrize("make", [
    lambda net: torch.optim.Adam(net.parameters(), lr=1e-3),
    lambda net: torch.optim.AdamW(net.parameters(), lr=1e-3),
    lambda net: torch.optim.SGD(net.parameters(), lr=1e-3)], ids=["Adam", "AdamW", "SGD"])
def test_a_torch_optimizer_that_ignores_the_parametrizations_rates_is_warned_about(make) -> None:
    """A torch optimizer built on model.parameters() with one rate trains a muP net as SP with
    muP's initialization (input layer 4x too slow under SGD at 4x the base width, hidden layer
    4x too fast under Adam); train said nothing."""
    x = torch.randn(8, 3, dtype=torch.float64)
    net = _mup_net()
    with pytest.warns(UserWarning, match="not this model's parametrization's"):
        wn.train(net, x, x[:, :1], steps=1, optimizer=make(net))


@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_a_torch_optimizer_with_the_parametrizations_rates_is_not_warned_about(family) -> None:
    x = torch.randn(8, 3, dtype=torch.float64)
    nets = [(_mup_net(), lambda net: build_optimizer(net, family, 1e-3)),
            (_mup_net("ntk"), lambda net: torch.optim.Adam(net.parameters(), lr=1e-3)),
            (_mup_net(), lambda net: torch.optim.RMSprop(net.parameters(), lr=1e-3))]
    for net, make in nets:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wn.train(net, x, x[:, :1], steps=1, optimizer=make(net))
