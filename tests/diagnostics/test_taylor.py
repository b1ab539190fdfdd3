"""Taylor coefficients of the loss along an update: an exactly cubic loss, finite differences,
the gradient step and the O(lr^4) remainder."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.func import functional_call

import widenet as wn
from tests.diagnostics.parameter_models import DUMMY_X, DUMMY_Y, ParameterOutput
from widenet.diagnostics.taylor import taylor_coefficients
from widenet.dynamics.losses import mse


def cubic(p: int = 5, seed: int = 0):
    """L(theta) = a.theta + (1/2) theta^T A theta + (1/6) T[theta, theta, theta], T symmetric."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(p, generator=g, dtype=torch.float64)
    m = torch.randn(p, p, generator=g, dtype=torch.float64)
    t = torch.randn(p, p, p, generator=g, dtype=torch.float64)
    t = sum(t.permute(*order) for order in
            [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]) / 6
    big_a = m + m.T

    def loss_fn(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (a @ theta + 0.5 * theta @ big_a @ theta
                + torch.einsum("ijk,i,j,k->", t, theta, theta, theta) / 6)

    return ParameterOutput(torch.randn(p, generator=g, dtype=torch.float64)), loss_fn, (a, big_a, t)


@pytest.mark.parametrize("form", ["dict", "flat", "gradient"])
def test_an_exactly_cubic_loss_is_its_own_expansion(form: str) -> None:
    model, loss_fn, (a, big_a, t) = cubic()
    theta = model.theta.detach()
    gradient = a + big_a @ theta + 0.5 * torch.einsum("ijk,j,k->i", t, theta, theta)
    hessian = big_a + torch.einsum("ijk,k->ij", t, theta)
    g = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direction = {"dict": {"theta": g}, "flat": g, "gradient": None}[form]
    if form == "gradient":
        g = gradient
    lr = 0.3
    result = taylor_coefficients(model, loss_fn, DUMMY_X, DUMMY_Y, direction, lr)
    expected = (-lr * gradient @ g, lr**2 / 2 * g @ hessian @ g,
                -lr**3 / 6 * torch.einsum("ijk,i,j,k->", t, g, g, g))
    scale = max(abs(c.item()) for c in expected)
    for got, want in zip((result.c1, result.c2, result.c3), expected, strict=True):
        assert got == pytest.approx(want.item(), abs=1e-13 * scale)
    # g(s) = L(theta - s G) is a cubic polynomial: the expansion has no remainder.
    assert abs(result.remainder) <= 1e-13 * scale
    assert result.loss == pytest.approx(loss_fn(theta, DUMMY_Y).item(), rel=1e-15)
    assert result.predicted == pytest.approx(result.c1 + result.c2 + result.c3)
    assert result.lr == lr


@pytest.mark.parametrize("degree", [1, 2])
def test_low_degree_losses_have_vanishing_higher_coefficients(degree: int) -> None:
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def loss_fn(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return a @ theta + (0.5 * theta @ theta if degree == 2 else 0.0)

    model = ParameterOutput(torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64))
    g = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    lr = 0.5
    with torch.no_grad():
        result = taylor_coefficients(model, loss_fn, DUMMY_X, DUMMY_Y, g, lr)
    theta = model.theta.detach()
    gradient = a + (theta if degree == 2 else 0.0)
    assert result.c1 == pytest.approx(-lr * (gradient @ g).item(), rel=1e-15)
    assert result.c2 == pytest.approx(lr**2 / 2 * (g @ g).item() if degree == 2 else 0.0,
                                      rel=1e-15)
    assert result.c3 == 0.0
    assert abs(result.remainder) <= 1e-15


def tanh_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :1])
    net = wn.MLP(3, [10, 10], 1, "tanh", bias_std=0.3, seed=2, dtype=torch.float64)
    direction = {name: torch.randn(p.shape, generator=g, dtype=torch.float64)
                 for name, p in net.named_parameters()}
    norm = math.sqrt(sum(d.square().sum().item() for d in direction.values()))
    return net, x, y, {name: d / norm for name, d in direction.items()}


def test_coefficients_match_finite_differences_of_g() -> None:
    net, x, y, direction = tanh_problem()
    params = {name: p.detach() for name, p in net.named_parameters()}

    def g(s: float) -> float:
        moved = {name: params[name] - s * direction[name] for name in params}
        return mse(functional_call(net, moved, (x,)), y).item()

    def derivatives(h: float) -> tuple[float, float, float]:
        """Central differences, each with truncation error O(h^2)."""
        return ((g(h) - g(-h)) / (2 * h),
                (g(h) - 2 * g(0.0) + g(-h)) / h**2,
                (g(2 * h) - 2 * g(h) + 2 * g(-h) - g(-2 * h)) / (2 * h**3))

    h = 2e-2
    coarse, fine = derivatives(h), derivatives(h / 2)
    lr = 0.1
    result = taylor_coefficients(net, mse, x, y, direction, lr)
    exact = (result.c1 / lr, 2 * result.c2 / lr**2, 6 * result.c3 / lr**3)
    for m, (d_h, d_half, d_exact) in enumerate(zip(coarse, fine, exact, strict=True), start=1):
        # Richardson extrapolation leaves c h^4 g^(m+4) / 4! with c <= 1/5 and h^4 = 1.6e-7
        # (g's derivatives of order 5-7 are below 10 here): at most 1e-8. Rounding adds about
        # eps * |g| / (h/2)^m <= 2e-16 / 1e-6 = 2e-10 (m = 3).
        richardson = (4 * d_half - d_h) / 3
        assert richardson == pytest.approx(d_exact, abs=1e-8), m


def test_the_default_direction_is_the_gradient_step() -> None:
    net, x, y, _ = tanh_problem()
    lr = 0.05
    result = taylor_coefficients(net, mse, x, y, None, lr)
    stepped = copy.deepcopy(net)
    loss = mse(stepped(x), y)
    loss.backward()
    gradient_norm2 = sum(p.grad.square().sum() for p in stepped.parameters()).item()
    torch.optim.SGD(stepped.parameters(), lr=lr).step()
    with torch.no_grad():
        after = mse(stepped(x), y).item()
    assert result.c1 == pytest.approx(-lr * gradient_norm2, rel=1e-13)
    assert result.loss == pytest.approx(loss.item(), rel=1e-15)
    assert result.actual == pytest.approx(after - loss.item(), rel=1e-10)


def test_the_remainder_is_fourth_order_in_lr() -> None:
    net, x, y, _ = tanh_problem()
    remainders = [taylor_coefficients(net, mse, x, y, None, lr).remainder for lr in (0.05, 0.025)]
    # remainder = c4 + c5 + ...: halving lr divides it by 2^4 = 16 up to a factor 1 + O(lr)
    # (here |g^(5)/5!| / |g^(4)/4!| is about 1.5, so c5/c4 is about 0.075 at lr = 0.05).
    assert remainders[0] / remainders[1] == pytest.approx(16, rel=0.1)


def test_frozen_parameters_are_not_part_of_the_direction() -> None:
    net, x, y, direction = tanh_problem()
    net.layers[0].weight.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    with pytest.raises(wn.WidenetError, match=r"unexpected \['layers\.0\.weight'\]"):
        taylor_coefficients(net, mse, x, y, direction, 0.1)
    direction.pop("layers.0.weight")
    result = taylor_coefficients(net, mse, x, y, direction, 0.1)
    assert math.isfinite(result.c3)
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name])
        assert p.grad is None


def test_an_overflowing_lr_gives_nan_coefficients_not_an_error() -> None:
    net, x, y, _ = tanh_problem()
    result = taylor_coefficients(net, mse, x, y, None, 1e300)  # lr^2 and lr^3 overflow
    assert math.isfinite(result.c1)
    assert result.c1 < 0
    assert math.isnan(result.c2)
    assert math.isnan(result.c3)
    assert result.lr == 1e300


def _bad(name: str, value):
    _, _, _, direction = tanh_problem()
    return {**direction, name: value}


@pytest.mark.parametrize(("direction", "lr", "message"), [
    (None, 0.0, "lr must be > 0"),
    (None, -1.0, "lr must be > 0"),
    (None, math.inf, "lr must be a finite"),
    ({}, 0.1, "missing \\['layers.0.weight'"),
    (_bad("extra", torch.zeros(1)), 0.1, "unexpected \\['extra'\\]"),
    (_bad("layers.0.weight", torch.zeros(3, 10)), 0.1, "must be a tensor of the parameter's shape"),
    (_bad("layers.0.weight", math.nan * torch.zeros(10, 3)), 0.1, "direction contains NaN"),
    ([torch.zeros(1)], 0.1, "direction must be a dict"),
    (torch.zeros(7), 0.1, "flat vector of the model's 161"),
])
def test_bad_input(direction, lr: float, message: str) -> None:
    net, x, y, _ = tanh_problem()
    with pytest.raises(wn.WidenetError, match=message):
        taylor_coefficients(net, mse, x, y, direction, lr)


def test_backward_hooks_are_refused() -> None:
    """A backward hook scaling an input gradient by 10 changed c1, c2 and c3 silently (and the
    default direction, the gradient by torch.func, failed with a RuntimeError)."""
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                              torch.nn.Linear(3, 1)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    y = torch.randn(5, 1, dtype=torch.float64)
    direction = torch.ones(sum(p.numel() for p in net.parameters()), dtype=torch.float64)
    handle = net[1].register_full_backward_hook(lambda module, grad_in, grad_out:
                                                (10 * grad_in[0],))
    try:
        for step in (direction, None):
            with pytest.raises(wn.WidenetError, match="module 1 of the model has backward hooks"):
                taylor_coefficients(net, mse, x, y, step, 0.1)
    finally:
        handle.remove()


@pytest.mark.parametrize(("loss_fn", "direction", "message"), [
    # g'(0) and the rest were 0.0: the graph was cut, not the loss flat.
    (lambda out, y: (out.detach() ** 2).sum(), torch.ones(3, dtype=torch.float64),
     "not connected to the trainable parameters"),
    # ||theta|| at theta = 0: g'' came back NaN as c2 and c3.
    (lambda out, y: out.norm(), torch.ones(3, dtype=torch.float64),
     "derivative of order 2 along the direction .* contains NaN or inf"),
    (lambda out, y: out.abs().sqrt().sum(), None, "gradient .* contains NaN or inf"),
])
def test_a_loss_without_derivatives_is_refused(loss_fn, direction, message: str) -> None:
    model = ParameterOutput(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(wn.WidenetError, match=message):
        taylor_coefficients(model, loss_fn, DUMMY_X, DUMMY_Y, direction, 0.1)


def test_a_random_loss_is_refused() -> None:
    """Dropout in training mode made the coefficients and ``actual`` those of different masks."""
    torch.manual_seed(6)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Dropout(0.5),
                              torch.nn.Linear(64, 1)).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    for direction in (None, torch.ones(sum(p.numel() for p in net.parameters()),
                                       dtype=torch.float64)):
        with pytest.raises(wn.WidenetError, match="the model or loss_fn is random"):
            taylor_coefficients(net, mse, x, y, direction, 0.1)


def test_works_under_inference_mode() -> None:
    """Autograd is off in inference mode: g had no graph in s, and c1 = c2 = c3 = 0.0 came back."""
    model, loss_fn, _ = cubic()
    direction = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)
    expected = taylor_coefficients(model, loss_fn, DUMMY_X, DUMMY_Y, direction, 0.1)
    with torch.inference_mode():
        got = taylor_coefficients(model, loss_fn, DUMMY_X, DUMMY_Y, direction * 1.0, 0.1)
    assert got == expected


class _OldStyleCube(torch.autograd.Function):
    """s^3 / 3 + s in the old style (ctx in forward, no setup_context): torch.func refuses it."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(s)
        return s**3 / 3 + s

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return grad_output * (s**2 + 1)


class _CubeNet(torch.nn.Module):
    def __init__(self, custom: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.first = torch.nn.Linear(3, 4).double()
        self.second = torch.nn.Linear(4, 1).double()
        self.custom = custom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.second(_OldStyleCube.apply(h) if self.custom else h**3 / 3 + h)


def test_the_default_direction_with_an_old_style_autograd_function() -> None:
    """The gradient came from torch.func.grad, which raised a RuntimeError for an
    autograd.Function without setup_context; the derivatives along it from torch.autograd."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.sin(x[:, :1])
    got = taylor_coefficients(_CubeNet(custom=True), mse, x, y, None, 0.1)
    expected = taylor_coefficients(_CubeNet(custom=False), mse, x, y, None, 0.1)
    for name in ("loss", "c1", "c2", "c3", "actual"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-12)
