"""Sharpness by Lanczos against exact spectra: dense Hessians, quadratics, the 2/lr threshold."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, hessian
from torch.nn import functional as F

import widenet as wn
from tests.diagnostics.parameter_models import DUMMY_X, DUMMY_Y, ParameterOutput
from widenet.diagnostics.sharpness import Sharpness, SharpnessTracker, sharpness
from widenet.diagnostics.taylor import taylor_coefficients
from widenet.dynamics.losses import mse


def quadratic_loss(a: torch.Tensor):
    return lambda out, y: 0.5 * out @ a @ out


def with_spectrum(values: list[float], seed: int = 0) -> torch.Tensor:
    """A = Q diag(values) Q^T for a random orthogonal Q: a Hessian whose spectrum is known."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=g,
                                       dtype=torch.float64))
    a = (q * torch.tensor(values, dtype=torch.float64)) @ q.T
    return (a + a.T) / 2


def quadratic(values: list[float], seed: int = 0) -> tuple[ParameterOutput, object]:
    g = torch.Generator().manual_seed(seed + 1)
    theta = torch.randn(len(values), generator=g, dtype=torch.float64)
    return ParameterOutput(theta), quadratic_loss(with_spectrum(values, seed))


def dense_hessian(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The (P, P) Hessian of loss_fn(model(x), y) in the trainable parameters, by
    torch.func.hessian (independently of widenet's flat-loss helper)."""
    named = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    sizes = [p.numel() for p in named.values()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        params = {n: part.view(p.shape) for (n, p), part in zip(named.items(), parts,
                                                                 strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return hessian(loss)(torch.cat([p.reshape(-1) for p in named.values()]))


def regression(n: int = 20, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.cat([torch.sin(x[:, :1]), torch.cos(x[:, 1:2])], dim=1)


def tanh_mlp() -> tuple[nn.Module, object, torch.Tensor, torch.Tensor]:
    x, y = regression()
    return wn.MLP(3, [12, 12], 2, "tanh", bias_std=0.2, seed=1, dtype=torch.float64), mse, x, y


def relu_classifier() -> tuple[nn.Module, object, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, _ = regression(n=30, d=4, seed=2)
    net = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3)).double()
    return net, F.cross_entropy, x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def partly_frozen() -> tuple[nn.Module, object, torch.Tensor, torch.Tensor]:
    net, loss_fn, x, y = tanh_mlp()
    net.layers[0].weight.requires_grad_(False)
    return net, loss_fn, x, y


@pytest.mark.parametrize("problem", [tanh_mlp, relu_classifier, partly_frozen])
def test_top_eigenpairs_match_the_dense_hessian(problem) -> None:
    net, loss_fn, x, y = problem()
    h = dense_hessian(net, loss_fn, x, y)
    exact = torch.linalg.eigvalsh(h).flip(0)
    norm = exact.abs().max()
    tol = 1e-9
    result = sharpness(net, loss_fn, x, y, k=3, tol=tol)
    assert result.converged
    assert result.eigenvectors.shape == (3, h.shape[0])
    # Each accepted Ritz value lies within its residual (<= tol * ||H||) of an eigenvalue, and
    # the residuals are the true ||H v - lambda v|| up to rounding.
    bound = tol * norm + 1e-12 * norm
    assert (result.eigenvalues - exact[:3]).abs().max() <= bound
    true_residuals = (result.eigenvectors @ h - result.eigenvalues[:, None]
                      * result.eigenvectors).norm(dim=1)
    assert true_residuals.max() <= bound
    assert torch.allclose(result.eigenvectors @ result.eigenvectors.T,
                          torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert result.value == result.eigenvalues[0].item()


def test_sharpness_is_the_algebraically_largest_eigenvalue() -> None:
    # -5 is the largest in magnitude; sharpness is lambda_max = 3.
    values = [-5.0, 3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -4.0]
    model, loss_fn = quadratic(values)
    tol = 1e-6
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=3, tol=tol)
    assert result.converged
    assert torch.allclose(result.eigenvalues, torch.tensor([3.0, 2.5, 2.0], dtype=torch.float64),
                          atol=tol * 5, rtol=0)


def test_repeated_top_eigenvalue_is_found_twice_with_k_2() -> None:
    values = [4.0, 4.0, 1.0, 0.5, 0.25, 0.125, -1.0, 0.0]
    model, loss_fn = quadratic(values, seed=3)
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=2, tol=1e-8)
    assert torch.allclose(result.eigenvalues, torch.tensor([4.0, 4.0], dtype=torch.float64),
                          atol=1e-7, rtol=0)


def test_k_equal_to_the_parameter_count_gives_the_whole_spectrum() -> None:
    values = [3.0, -2.0, 1.0, 0.5, 7.0, 0.0]
    model, loss_fn = quadratic(values, seed=4)
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=6, tol=1e-10)
    assert result.converged
    assert torch.allclose(result.eigenvalues, torch.tensor(sorted(values, reverse=True),
                                                           dtype=torch.float64), atol=1e-12)


def test_thick_restarts_converge_with_a_small_basis() -> None:
    values = [10.0, 9.9, 9.8, *torch.linspace(0.0, 9.0, 297).tolist()]
    model, loss_fn = quadratic(values, seed=5)
    tol = 1e-8
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=2, tol=tol, max_basis=8,
                       max_hvps=5000)
    assert result.converged
    assert torch.allclose(result.eigenvalues, torch.tensor([10.0, 9.9], dtype=torch.float64),
                          atol=tol * 10, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=20), st.integers(0, 1000))
def test_sharpness_of_random_quadratics(values: list[float], seed: int) -> None:
    model, loss_fn = quadratic(values, seed=seed)
    tol = 1e-7
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, tol=tol)
    scale = max(abs(v) for v in values)
    assert result.converged
    assert abs(result.value - max(values)) <= tol * scale + 1e-12 * max(scale, 1.0)


@pytest.mark.parametrize(("factor", "diverges"), [(0.98, False), (1.02, True)])
def test_gradient_descent_on_a_quadratic_diverges_iff_lr_exceeds_2_over_s(
        factor: float, diverges: bool) -> None:
    model, loss_fn = quadratic(torch.linspace(0.1, 10.0, 40).tolist(), seed=6)
    s = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, tol=1e-8)
    lr = factor * 2 / s.value
    assert s.ratio(lr) == pytest.approx(factor, rel=1e-12)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    initial = loss_fn(model(DUMMY_X), DUMMY_Y).item()
    for _ in range(400):
        optimizer.zero_grad()
        loss = loss_fn(model(DUMMY_X), DUMMY_Y)
        loss.backward()
        optimizer.step()
    final = loss_fn(model(DUMMY_X), DUMMY_Y).item()
    # The top mode scales by |1 - lr S| = |1 - 2 factor| per step: 0.96 or 1.04.
    assert (final > 1e6 * initial) if diverges else (final < 1e-3 * initial)


def test_threshold_with_momentum() -> None:
    model, loss_fn = quadratic([2.0, 1.0])
    s = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, tol=1e-10)
    assert s.threshold(0.5) == pytest.approx(4.0)
    assert s.threshold(0.5, momentum=0.9) == pytest.approx(7.6)
    assert s.ratio(0.5, momentum=0.9) == pytest.approx(2.0 / 7.6)


def test_warm_start_from_exact_eigenvectors_needs_one_block() -> None:
    model, loss_fn = quadratic([5.0, 4.0, 3.0, 1.0, 0.5, -2.0, 0.1, 0.2], seed=7)
    tracker = SharpnessTracker(k=2, tol=1e-8)
    cold = tracker(model, loss_fn, DUMMY_X, DUMMY_Y)
    warm = tracker(model, loss_fn, DUMMY_X, DUMMY_Y)
    assert cold.hvps > 2
    assert warm.hvps == 2
    assert warm.converged
    assert torch.allclose(warm.eigenvalues, cold.eigenvalues, atol=1e-7, rtol=0)
    tracker.reset()
    assert tracker(model, loss_fn, DUMMY_X, DUMMY_Y).hvps == cold.hvps


def test_warm_start_after_training_steps_needs_fewer_products() -> None:
    net, loss_fn, x, y = tanh_mlp()
    tracker = SharpnessTracker(tol=1e-6)
    tracker(net, loss_fn, x, y)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    warm = tracker(net, loss_fn, x, y)
    cold = sharpness(net, loss_fn, x, y, tol=1e-6)
    assert warm.converged
    assert cold.converged
    assert abs(warm.value - cold.value) <= 2e-6 * abs(cold.value)
    assert warm.hvps < cold.hvps


class _ShiftedCube(torch.autograd.Function):
    """s^3 / 3 + s with hand-written derivatives (and no vmap rule)."""

    @staticmethod
    def forward(s: torch.Tensor) -> torch.Tensor:
        return s**3 / 3 + s

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.s = inputs[0]

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output * (ctx.s**2 + 1)

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor) -> torch.Tensor:
        return tangent * (ctx.s**2 + 1)


class CubeNet(nn.Module):
    def __init__(self, custom: bool):
        super().__init__()
        torch.manual_seed(3)
        self.first, self.second = nn.Linear(4, 3).double(), nn.Linear(3, 2).double()
        self.custom = custom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.second(_ShiftedCube.apply(h) if self.custom else h**3 / 3 + h)


def test_models_with_custom_autograd_functions() -> None:
    x, y = regression(n=10, d=4)
    tol = 1e-10
    custom = sharpness(CubeNet(custom=True), mse, x, y, k=2, tol=tol)
    exact = torch.linalg.eigvalsh(dense_hessian(CubeNet(custom=False), mse, x, y)).flip(0)[:2]
    assert custom.converged
    assert (custom.eigenvalues - exact).abs().max() <= 2 * tol * exact.abs().max()


def test_a_loss_linear_in_the_parameters_has_sharpness_zero() -> None:
    net = nn.Linear(3, 2).double()
    x, _ = regression()
    result = sharpness(net, lambda out, y: out.sum(), x, x, k=2)
    assert result.converged
    assert torch.equal(result.eigenvalues, torch.zeros(2, dtype=torch.float64))


def test_works_under_no_grad() -> None:
    model, loss_fn = quadratic([2.0, 1.0, -3.0])
    with torch.no_grad():
        result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, tol=1e-10)
    assert result.value == pytest.approx(2.0, abs=1e-9)


def test_works_under_inference_mode() -> None:
    """Autograd is off in inference mode: the gradient's graph was missing (a RuntimeError)."""
    net, loss_fn, x, y = tanh_mlp()
    expected = sharpness(net, loss_fn, x, y, tol=1e-10)
    with torch.inference_mode():
        result = sharpness(net, loss_fn, x, y, tol=1e-10, init=expected.eigenvectors * 1.0)
    assert result.value == pytest.approx(expected.value, rel=1e-9)


def test_a_torch_func_transform_is_refused_naming_the_diagnostic() -> None:
    """Under torch.func.grad the refusal said 'the kernels take points', for a call of
    sharpness or taylor_coefficients."""
    net, loss_fn, x, y = tanh_mlp()
    with pytest.raises(wn.WidenetError, match=r"^sharpness cannot run inside a torch\.func "
                       r"transform .*call sharpness outside the transform"):
        torch.func.grad(lambda points: sharpness(net, loss_fn, points, y).eigenvalues.sum())(x)
    with pytest.raises(wn.WidenetError, match=r"^taylor_coefficients cannot run inside"):
        torch.func.grad(lambda points: torch.tensor(
            taylor_coefficients(net, loss_fn, points, y, None, 0.1).c1))(x)


def test_the_model_is_not_touched() -> None:
    net, loss_fn, x, y = partly_frozen()
    net.train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    sharpness(net, loss_fn, x, y, k=2)
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name])
        assert p.grad is None
        assert p.requires_grad == flags[name]
    assert net.training


def test_float32_runs_in_float32() -> None:
    net, loss_fn, x, y = tanh_mlp()
    exact = torch.linalg.eigvalsh(dense_hessian(net, loss_fn, x, y))[-1].item()
    result = sharpness(net.float(), loss_fn, x.float(), y.float(), tol=1e-4)
    assert result.eigenvectors.dtype == torch.float32
    assert result.eigenvalues.dtype == torch.float64
    # Residual tolerance 1e-4 plus float32 rounding of the HVPs (about 1e-6 relative).
    assert result.value == pytest.approx(exact, rel=2e-4)


def test_max_hvps_caps_the_work() -> None:
    model, loss_fn = quadratic(torch.linspace(0.0, 1.0, 200).tolist(), seed=8)
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=2, tol=1e-12, max_hvps=7)
    assert not result.converged
    assert result.hvps <= 7
    assert result.eigenvalues.shape == (2,)


def test_init_accepts_vectors_and_results() -> None:
    model, loss_fn = quadratic([3.0, 2.0, 1.0, 0.0], seed=9)
    first = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=2, tol=1e-10)
    for init in (first, first.eigenvectors, first.eigenvectors[0], torch.zeros(4)):
        again = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, k=2, tol=1e-10, init=init)
        assert torch.allclose(again.eigenvalues, first.eigenvalues, atol=1e-9, rtol=0)


def _no_parameters() -> nn.Module:
    net = nn.Linear(1, 1).double()
    net.requires_grad_(False)
    return net


def _nan_parameters() -> nn.Module:
    net = nn.Linear(1, 1).double()
    with torch.no_grad():
        net.weight.fill_(math.nan)
    return net


LINEAR = nn.Linear(1, 1).double()
NAN = torch.tensor([[math.nan]], dtype=torch.float64)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be a positive integer"),
    ({"k": 1.5}, "k must be a positive integer"),
    ({"k": 3}, "only 2 trainable parameters"),
    ({"tol": 0.0}, "tol must be > 0"),
    ({"tol": math.nan}, "tol must be a finite"),
    ({"max_hvps": 0}, "max_hvps must be a positive integer"),
    ({"k": 2, "max_hvps": 1}, "less than one block"),
    ({"max_basis": 2}, "max_basis"),
    ({"seed": -1}, "seed must be an integer from 0 to"),
    ({"init": torch.ones(5)}, "flat vector of the model's 2"),
    ({"init": torch.ones(1, 1, 2)}, "init must be a Sharpness result"),
    ({"init": torch.tensor([math.inf, 1.0])}, "init contains NaN or inf"),
    ({"model": _no_parameters()}, "no trainable parameters"),
    ({"model": _nan_parameters()}, "parameters contain NaN or inf"),
    ({"model": "net"}, "must be a torch.nn.Module"),
    ({"model": nn.LazyLinear(1).double()}, "uninitialized parameters"),
    ({"model": nn.Linear(1, 1, device="meta")}, "on the meta device"),
    ({"x": NAN}, "x contains NaN or inf"),
    ({"x": torch.ones(2, 1, dtype=torch.long)}, "floating-point"),
    ({"y": NAN}, "y contains NaN or inf"),
    ({"loss_fn": lambda out, y: torch.cat([out, out]).sum(1)}, "must return a real scalar"),
    ({"loss_fn": "mse"}, "loss_fn must be a callable"),
    ({"loss_fn": lambda out, y: mse(out.detach(), y)}, "not connected to the trainable"),
    ({"loss_fn": lambda out, y: torch.tensor(1.0)}, "not connected to the trainable"),
    ({"loss_fn": lambda out, y: (out - out.detach()).abs().sqrt().sum()},
     "gradient at the model's parameters contains NaN or inf"),
    ({"loss_fn": lambda out, y: (out - out.detach()).norm()},
     "Hessian-vector product at the model's parameters contains NaN or inf"),
    ({"loss_fn": lambda out, y: (out - y.reshape(3)).sum()},
     "loss_fn\\(model\\(x\\), y\\) failed"),
])
def test_bad_input(kwargs: dict, message: str) -> None:
    arguments = {"model": LINEAR, "loss_fn": mse, "x": torch.ones(1, 1, dtype=torch.float64),
                 "y": torch.ones(1, 1, dtype=torch.float64), **kwargs}
    with pytest.raises(wn.WidenetError, match=message):
        sharpness(arguments.pop("model"), arguments.pop("loss_fn"), arguments.pop("x"),
                  arguments.pop("y"), **arguments)


def test_tracker_validates_its_settings_and_threshold_its_lr() -> None:
    with pytest.raises(wn.WidenetError, match="tol must be > 0"):
        SharpnessTracker(tol=-1.0)
    result = Sharpness(torch.tensor([2.0]), torch.ones(1, 1), torch.zeros(1), 1, True)
    with pytest.raises(wn.WidenetError, match="lr must be > 0"):
        result.threshold(0.0)
    with pytest.raises(wn.WidenetError, match=r"momentum must be in \[0, 1\), got 1.0"):
        result.threshold(0.1, momentum=1.0)  # was (2 + 2)/lr, for a method that diverges


def autograd_hessian(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The (P, P) Hessian in the trainable parameters by torch.autograd.functional.hessian (a
    second brute-force route beside ``dense_hessian``; tied parameters appear once)."""
    named = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    sizes = [p.numel() for p in named.values()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params = {n: part.view(p.shape) for (n, p), part in
                  zip(named.items(), torch.split(flat, sizes), strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    flat = torch.cat([p.reshape(-1) for p in named.values()])
    return torch.autograd.functional.hessian(loss, flat)


def tiny_tanh_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(4)
    x, y = regression(n=6, d=2, seed=5)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double(), x, y


class TiedNet(nn.Module):
    """tanh(W tanh(W x + b) + c), one W used twice, then a readout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.first, self.second = nn.Linear(2, 2).double(), nn.Linear(2, 2).double()
        self.second.weight = self.first.weight
        self.readout = nn.Linear(2, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.tanh(self.second(torch.tanh(self.first(x)))))


def tied() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y = regression(n=6, d=2, seed=5)
    return TiedNet(), x, y


def zero_loss() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A net fitting its own outputs: L = 0, H = J^T J / n (positive semi-definite)."""
    net, x, _ = tiny_tanh_net()
    with torch.no_grad():
        return net, x, net(x)


def frozen_tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    net, x, y = tiny_tanh_net()
    net[0].weight.requires_grad_(False)
    return net, x, y


@pytest.mark.parametrize("problem", [tiny_tanh_net, tied, zero_loss, frozen_tiny])
def test_the_whole_spectrum_matches_the_brute_force_hessian(problem) -> None:
    """k = P: every eigenvalue, the negative ones of these saddle points (and 0 at a zero loss)
    included, against eigvalsh of torch.autograd.functional.hessian."""
    net, x, y = problem()
    exact = torch.linalg.eigvalsh(autograd_hessian(net, mse, x, y)).flip(0)
    tol = 1e-10
    result = sharpness(net, mse, x, y, k=exact.shape[0], tol=tol)
    assert result.converged
    assert (result.eigenvalues - exact).abs().max() <= 2 * tol * exact.abs().max()
    if problem is zero_loss:
        assert result.value > 0
        assert exact.min() >= -1e-12 * exact.max()
    else:
        assert exact.min() < 0  # a negative-curvature point


def test_backward_hooks_are_refused_not_differentiated_through() -> None:
    """A full backward hook multiplying the Tanh's input gradient by 10 made the Hessian-vector
    products those of the hooked backward pass: the sharpness came out 21.3 for 2.19."""
    net, x, y = tiny_tanh_net()
    exact = torch.linalg.eigvalsh(autograd_hessian(net, mse, x, y))
    handle = net[1].register_full_backward_hook(lambda module, grad_in, grad_out:
                                                (10 * grad_in[0],))
    with pytest.raises(wn.WidenetError, match=r"^module 1 of the model has backward hooks .*"
                       r"would not be those of the loss; remove them"):
        sharpness(net, mse, x, y)
    handle.remove()
    handle = net.register_full_backward_pre_hook(lambda module, grad_out: None)
    with pytest.raises(wn.WidenetError, match=r"^the model has backward hooks"):
        sharpness(net, mse, x, y)
    handle.remove()
    handle = nn.modules.module.register_module_full_backward_hook(
        lambda module, grad_in, grad_out: None)
    try:
        with pytest.raises(wn.WidenetError, match=r"^torch has global module backward hooks"):
            sharpness(net, mse, x, y)
    finally:
        handle.remove()
    tol = 1e-10
    result = sharpness(net, mse, x, y, k=2, tol=tol)
    assert result.converged
    expected = exact.flip(0)[:2]
    assert (result.eigenvalues - expected).abs().max() <= 2 * tol * exact.abs().max()


def test_a_random_loss_is_refused() -> None:
    """Dropout in training mode: each Hessian-vector product was that of one random mask, the
    sharpness a random number; the loss differs between two passes at the same parameters."""
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(3, 64), nn.Dropout(0.5), nn.Linear(64, 1)).double()
    x, y = regression(n=16)
    with pytest.raises(wn.WidenetError, match="the model or loss_fn is random"):
        sharpness(net, mse, x, y[:, :1])
    net.eval()
    assert sharpness(net, mse, x, y[:, :1]).converged


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float32, 1e-22), (torch.float32, 1e20),
                                              (torch.float64, 1e-300), (torch.float64, 1e300)])
def test_hessians_of_extreme_scale(dtype: torch.dtype, scale: float) -> None:
    """Norms squared the entries of the products: at scale 1e-300 they underflowed to 0 and the
    search stopped after one product, 'converged' at -2.1e-301 for lambda_max = 2e-300 (float32,
    1e-22: 1% off); at 1e300 they overflowed (-2.1e299). The Lanczos residual bound holds at
    any scale."""
    values = [3.0, 2.0, 1.0, -1.0, 0.5]
    a = with_spectrum(values, seed=1) * scale
    model = ParameterOutput(torch.randn(5, dtype=torch.float64)).to(dtype)
    tol = 1e-4
    result = sharpness(model, quadratic_loss(a.to(dtype)), DUMMY_X.to(dtype), DUMMY_Y.to(dtype),
                       k=2, tol=tol)
    assert result.converged
    # tol * ||H|| from the residuals, plus the float32 rounding of A and of the products.
    rounding = 10 * torch.finfo(dtype).eps
    expected = torch.tensor([3.0, 2.0], dtype=torch.float64)
    assert (result.eigenvalues / scale - expected).abs().max() <= (tol + rounding) * 3.0


def test_running_out_of_memory_is_not_reported_as_a_failing_loss() -> None:
    """torch.OutOfMemoryError is a RuntimeError: it became 'loss_fn(model(x), y) failed'."""

    def exhausted(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        sharpness(LINEAR, exhausted, torch.ones(1, 1, dtype=torch.float64),
                  torch.ones(1, 1, dtype=torch.float64))


def test_a_dominant_negative_eigenvalue_does_not_loosen_the_tolerance() -> None:
    """Residuals were compared with tol ||H||: beside an eigenvalue -1e6, a Ritz value -0.007
    with residual 0.58 was accepted after two products as the sharpness, which is 1.0."""
    values = [-1e6, *torch.linspace(-1.0, 1.0, 201).tolist()]
    model, loss_fn = quadratic(values, seed=2)
    tol = 1e-4
    result = sharpness(model, loss_fn, DUMMY_X, DUMMY_Y, tol=tol)
    assert result.converged
    # Within its residual (<= tol * 1.0) of an eigenvalue; the next one down is 0.99.
    assert abs(result.value - 1.0) <= tol
