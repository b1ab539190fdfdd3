"""The linearized model: an exact first-order Taylor model that GD trains along the kernel
recurrence."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, jvp

import widenet as wn
from tests.conftest import brute_force_ntk
from widenet.dynamics import predict
from widenet.dynamics.linearize import linearize
from widenet.dynamics.train import train
from widenet.parametrizations import MuP


def setup(width: int = 32) -> tuple[wn.MLP, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 1, generator=g, dtype=torch.float64)
    return wn.MLP(3, [width, width], 1, "tanh", bias_std=0.2, seed=1, dtype=torch.float64), x, y


def test_equals_the_model_at_init_and_is_affine_in_the_parameters() -> None:
    net, x, _ = setup()
    lin = linearize(net)
    assert torch.allclose(lin(x), net(x), atol=1e-14)
    theta0 = {n: p.detach().clone() for n, p in lin.model.named_parameters()}
    delta = {n: torch.randn_like(p) for n, p in theta0.items()}

    def output_at(scale: float) -> torch.Tensor:
        with torch.no_grad():
            for n, p in lin.model.named_parameters():
                p.copy_(theta0[n] + scale * delta[n])
            return lin(x)

    base, one, two = output_at(0.0), output_at(1.0), output_at(2.0)
    assert torch.allclose(two - base, 2 * (one - base), atol=1e-12)
    assert not torch.allclose(one, net(x).detach())  # the original net is untouched by lin


def test_after_training_it_is_f0_plus_the_jvp_of_the_parameter_change() -> None:
    """f_lin(theta) = f(theta_0) + J(theta_0) (theta - theta_0), against torch.func.jvp on the
    original net, for two outputs and a frozen layer (which stays at theta_0's value)."""
    _, x, _ = setup()
    net = wn.MLP(3, [16, 16], 2, "tanh", bias_std=0.2, seed=1, dtype=torch.float64)
    net.layers[1].weight.requires_grad_(False)
    lin = linearize(net)
    y = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    train(lin, x, y, lr=0.3, steps=10)
    theta0 = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    delta = {n: lin.model.get_parameter(n).detach() - p for n, p in theta0.items()}
    assert all(float(d.abs().max()) > 0 for d in delta.values())
    assert torch.equal(lin.model.layers[1].weight, net.layers[1].weight)
    f0, tangent = jvp(lambda params: functional_call(net, params, (x,)), (theta0,), (delta,))
    torch.testing.assert_close(lin(x).detach(), f0 + tangent, rtol=0, atol=1e-14)


def test_gd_on_the_linearized_model_follows_the_kernel_recurrence_exactly() -> None:
    """MSE (1/(2n))||f - y||^2 and GD: r_{s+1} = (I - (lr/n) K_0) r_s, K_0 = J(theta_0) J^T."""
    net, x, y = setup()
    kernel = brute_force_ntk(net, x)
    lin = linearize(net)
    lr, steps, n = 0.5, 20, x.shape[0]
    residual = (net(x) - y).detach()
    train(lin, x, y, lr=lr, steps=steps)
    step = torch.eye(n, dtype=torch.float64) - (lr / n) * kernel
    expected = torch.linalg.matrix_power(step, steps) @ residual
    assert torch.allclose(lin(x).detach() - y, expected, atol=1e-12)


@pytest.mark.parametrize("parametrization", [MuP(base_hidden=8), "mean-field"])
def test_per_parameter_learning_rates_weight_the_kernel_gd_follows(parametrization) -> None:
    """train gives parameter p the rate lr s_p (model.lr_scales("sgd")), so GD on the linearized
    model follows K = sum_p s_p J_p J_p^T exactly (docs/theory.md section 5.4), not J J^T."""
    _, x, y = setup()
    net = wn.MLP(3, [32], 1, "tanh", bias_std=0.2, parametrization=parametrization, seed=1,
                 dtype=torch.float64)
    scales = net.lr_scales("sgd")
    assert len(set(scales.values())) > 1
    blocks = wn.empirical_ntk(net, x, per_layer=True).blocks
    weighted = sum(scales[name] * block for name, block in blocks.items())
    with torch.no_grad():
        f0 = net(x)
    dynamics = predict.KernelDynamics(weighted, y, f0)
    lr, steps = 0.5 * dynamics.max_stable_lr, 20
    lin = linearize(net)
    train(lin, x, y, lr=lr, steps=steps)
    assert torch.allclose(lin(x).detach(), dynamics.gd_train(steps, lr), rtol=0, atol=1e-12)
    unweighted = predict.KernelDynamics(wn.empirical_ntk(net, x).ntk, y, f0)
    assert not torch.allclose(lin(x).detach(), unweighted.gd_train(steps, lr), atol=1e-3)


def test_small_steps_approach_gradient_flow() -> None:
    """At fixed time t = lr * steps, GD's residual tends to exp(-K_0 t / n) r_0 like O(lr)."""
    net, x, y = setup()
    kernel = brute_force_ntk(net, x)
    residual = (net(x) - y).detach()
    t, n = 2.0, x.shape[0]
    flow = torch.linalg.matrix_exp(-kernel * t / n) @ residual
    errors = []
    for steps in (10, 40):
        lin = linearize(net)
        train(lin, x, y, lr=t / steps, steps=steps)
        errors.append(float((lin(x).detach() - y - flow).norm()))
    assert errors[1] < errors[0] / 3  # first order in lr: a 4x smaller step, ~4x smaller gap


def test_bad_models() -> None:
    with pytest.raises(wn.WidenetError, match=r"nn\.Module"):
        linearize("net")
    with pytest.raises(wn.WidenetError, match="no trainable parameters"):
        linearize(torch.nn.Linear(2, 1).requires_grad_(False))


def test_the_copy_keeps_no_hooks_of_the_original() -> None:
    """The copy drops every module hook of the original, backward pre-hooks included: their
    handles cannot reach the copy, and the NTK refuses a model with backward hooks."""
    net, x, _ = setup()
    handles = [net.layers[0].register_forward_hook(lambda m, i, o: None),
               net.layers[0].register_forward_pre_hook(lambda m, i: None),
               net.layers[0].register_full_backward_hook(lambda m, gi, go: None),
               net.layers[0].register_full_backward_pre_hook(lambda m, go: None)]
    lin = linearize(net)
    for handle in handles:
        handle.remove()
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                   or m._backward_pre_hooks for m in lin.modules())
    assert torch.allclose(wn.empirical_ntk(lin, x).ntk, wn.empirical_ntk(net, x).ntk,
                          rtol=1e-12, atol=0)
