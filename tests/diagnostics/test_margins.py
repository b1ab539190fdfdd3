"""Normalized and smoothed margins of homogeneous nets (Lyu & Li 2020)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from widenet import MLP, WidenetError, activations
from widenet import nn as wn_nn
from widenet.diagnostics.margins import (
    Margins,
    exponential_smoothed_min,
    homogeneity_degree,
    homogeneity_error,
    logistic_smoothed_min,
    margins_from_outputs,
    margins_of,
    parameter_norm,
    pointwise_margins,
)

F64 = torch.float64


def _hand_net() -> nn.Sequential:
    """f(x) = relu(x_1) - relu(x_2): W1 = I, W2 = [1, -1], ||theta||^2 = 4, degree 2."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
    return net.double()


def _mlp(activation: object = "relu", hidden: tuple[int, ...] = (6, 5), out: int = 1,
         seed: int = 0) -> MLP:
    return MLP(3, list(hidden), out, activation, seed=seed, dtype=F64)


def _points(n: int = 9, d: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_hand_built_binary_net_has_the_known_margins() -> None:
    x = torch.tensor([[3.0, 0.0], [0.0, 2.0], [2.0, 1.0]], dtype=F64)
    y = torch.tensor([1, -1, 1])  # f = 3, -2, 1, so q = 3, 2, 1
    m = margins_of(_hand_net(), x, y)
    assert m.degree == 2
    assert m.parameter_norm == pytest.approx(2.0)
    assert m.min_margin == pytest.approx(1.0)
    assert m.normalized == pytest.approx(1.0 / 4.0)
    loss_e = math.exp(-3) + math.exp(-2) + math.exp(-1)
    assert m.smoothed_exponential == pytest.approx(math.log(1 / loss_e) / 4, rel=1e-12)
    loss_l = sum(math.log1p(math.exp(-q)) for q in (3.0, 2.0, 1.0))
    assert m.smoothed_logistic == pytest.approx(-math.log(math.expm1(loss_l)) / 4, rel=1e-12)


def test_multiclass_margin_is_the_gap_to_the_best_other_class() -> None:
    net = nn.Sequential(nn.Linear(3, 3, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    x = torch.tensor([[4.0, 1.0, 1.0], [0.0, 2.0, 0.5], [1.0, 1.0, 1.0]], dtype=F64)
    labels = torch.tensor([0, 1, 0])  # outputs (4,2,3), (0,4,1.5), (1,2,3)
    q = pointwise_margins(net(x), labels)
    assert torch.allclose(q, torch.tensor([1.0, 2.5, -2.0], dtype=F64))
    m = margins_of(net, x, labels)
    assert m.degree == 1
    assert m.normalized == pytest.approx(-2.0 / math.sqrt(14.0))


@pytest.mark.parametrize("activation", ["relu", "abs", "identity", "leaky_relu:0.2",
                                        activations.ab(0.3, -0.7)])
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5, 4)])
def test_degree_of_bias_free_mlps_is_the_number_of_dense_layers(activation: object,
                                                                hidden: tuple[int, ...]) -> None:
    net = _mlp(activation, hidden, out=2)
    degree = homogeneity_degree(net)
    assert degree == len(hidden) + 1
    for scale in (0.3, 2.5):
        assert homogeneity_error(net, _points(), degree, scale=scale) < 1e-12
    assert homogeneity_error(net, _points(), degree + 1) > 0.1  # the degree is sharp


def test_degree_of_sequential_stacks() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=False), nn.LeakyReLU(0.1),
                        nn.Sequential(nn.Linear(5, 5, bias=False), nn.ReLU(), nn.Identity()),
                        nn.Linear(5, 1, bias=False)).double()
    assert homogeneity_degree(net) == 3
    x = torch.randn(6, 2, 2, dtype=F64)
    assert homogeneity_error(net, x, 3) < 1e-12
    shared = nn.Linear(3, 3, bias=False).double()  # applied twice: counts twice
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    assert homogeneity_degree(tied) == 2
    assert homogeneity_error(tied, torch.randn(4, 3, dtype=F64), 2) < 1e-12


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e4])
def test_normalized_margin_is_invariant_under_scaling_the_parameters(scale: float) -> None:
    net = _mlp("abs", out=3)
    x, labels = _points(), torch.arange(9) % 3
    before = margins_of(net, x, labels)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    after = margins_of(net, x, labels)
    assert after.normalized == pytest.approx(before.normalized, rel=1e-10)
    assert after.parameter_norm == pytest.approx(scale * before.parameter_norm, rel=1e-12)
    assert after.min_margin == pytest.approx(scale**3 * before.min_margin, rel=1e-10)


def test_smoothed_margins_bound_the_normalized_margin_on_a_trained_direction() -> None:
    """Scale a separating net up: the smoothed margins approach gamma from below."""
    net = _mlp("relu", hidden=(8,))
    x = _points(12)
    labels = torch.where(net(x).detach().squeeze(1) >= 0, 1, -1)  # separable by construction
    previous_gap = math.inf
    for scale in (1.0, 3.0, 10.0):
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
        m = margins_of(net, x, labels)
        rho_l = m.parameter_norm ** m.degree
        assert m.normalized > 0
        assert m.normalized - math.log(12) / rho_l - 1e-12 <= m.smoothed_exponential
        assert m.smoothed_exponential <= m.normalized + 1e-15
        assert m.smoothed_logistic <= m.normalized + 1e-15
        gap = m.normalized - m.smoothed_exponential
        assert gap < previous_gap
        previous_gap = gap


def _naive_logistic(q: list[float]) -> float:
    return -math.log(math.expm1(sum(math.log1p(math.exp(-v)) for v in q)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=12))
def test_smoothed_mins_match_brute_force_and_bracket_the_min(values: list[float]) -> None:
    q = torch.tensor(values, dtype=F64)
    n, q_min = len(values), min(values)
    exponential = exponential_smoothed_min(q)
    assert exponential == pytest.approx(-math.log(sum(math.exp(-v) for v in values)), abs=1e-12)
    assert q_min - math.log(n) - 1e-12 <= exponential <= q_min + 1e-12
    logistic = logistic_smoothed_min(q)
    assert logistic == pytest.approx(_naive_logistic(values), rel=1e-9, abs=1e-9)
    # l is decreasing and l(q_min) <= Loss <= n l(q_min): l^-1(n l(q_min)) <= l^-1(Loss) <= q_min
    lower = -math.log(math.expm1(n * math.log1p(math.exp(-q_min))))
    assert lower - 1e-9 <= logistic <= q_min + 1e-9


@pytest.mark.parametrize(("values", "expected"), [
    ([1000.0, 2000.0], 1000.0), ([800.0], 800.0), ([-1000.0], -1000.0), ([40.0, 40.0],
                                                                         40.0 - math.log(2))])
def test_extreme_margins_stay_finite(values: list[float], expected: float) -> None:
    q = torch.tensor(values, dtype=F64)
    assert exponential_smoothed_min(q) == pytest.approx(expected, rel=1e-12)
    assert logistic_smoothed_min(q) == pytest.approx(expected, rel=1e-9)


def test_margins_from_outputs_uses_the_given_norm_and_degree() -> None:
    m = margins_from_outputs(torch.tensor([[2.0], [-3.0]]), torch.tensor([1.0, -1.0]),
                             parameter_norm=2.0, degree=3)
    assert isinstance(m, Margins)
    assert m.normalized == pytest.approx(2.0 / 8.0)
    assert m.min_margin == pytest.approx(2.0)
    huge = margins_from_outputs(torch.tensor([1.0]), torch.tensor([1]), parameter_norm=1e200,
                                degree=4)
    assert huge.normalized == 0.0  # rho^-L underflows to 0, never inf * 0


def test_parameter_norm_and_explicit_degree_for_a_custom_module() -> None:
    class TwoLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Parameter(torch.randn(4, 3, dtype=F64))
            self.second = nn.Parameter(torch.randn(1, 4, dtype=F64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x @ self.first.T) @ self.second.T

    net = TwoLayer()
    with pytest.raises(WidenetError, match="pass degree=L"):
        margins_of(net, _points(), torch.ones(9))
    assert homogeneity_error(net, _points(), 2) < 1e-12
    m = margins_of(net, _points(), torch.ones(9), degree=2)
    with torch.no_grad():
        expected_norm = math.sqrt(float(net.first.square().sum() + net.second.square().sum()))
        smallest_output = float(net(_points()).min())
    assert parameter_norm(net) == pytest.approx(expected_norm)
    assert m.normalized == pytest.approx(smallest_output / expected_norm**2)


def test_homogeneity_error_flags_biased_and_tanh_nets() -> None:
    assert homogeneity_error(MLP(3, [6], 1, "relu", bias_std=0.5, seed=0, dtype=F64),
                             _points(), 2) > 1e-3
    assert homogeneity_error(_mlp("tanh"), _points(), 3) > 1e-3


@pytest.mark.parametrize(("model", "message"), [
    (MLP(3, [4], 1, "relu", bias_std=0.1, seed=0), "bias_std=0.0"),
    (MLP(3, [4], 1, "tanh", seed=0), "not positively homogeneous"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1, bias=False)), "bias=False"),
    (nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh()), "'1' \\(Tanh\\)"),
    (nn.Sequential(nn.ReLU()), "no linear layer"),
    (nn.Linear(3, 1, bias=False), "pass degree=L"),
])
def test_non_homogeneous_nets_need_an_explicit_degree(model: nn.Module, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        margins_of(model, torch.randn(5, 3), torch.ones(5))


@pytest.mark.parametrize(("outputs", "labels", "message"), [
    (torch.ones(4, 1), torch.tensor([0, 1, 1, 0]), "-1 or \\+1"),
    (torch.ones(4), torch.tensor([1.0, 0.5, 1.0, 1.0]), "-1 or \\+1"),
    (torch.ones(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]), "integer class indices"),
    (torch.ones(4, 3), torch.tensor([0, 1, 3, 0]), "in \\[0, 3\\)"),
    (torch.ones(4, 3), torch.tensor([0, -1, 2, 0]), "in \\[0, 3\\)"),
    (torch.ones(4, 1), torch.ones(5), "shape \\(4,\\)"),
    (torch.ones(4, 1), torch.ones(4, 1), "labels.view"),
    (torch.tensor([1.0, float("nan")]), torch.ones(2), "NaN"),
    (torch.ones(0), torch.ones(0), "non-empty"),
    (torch.ones(2, 2, 2), torch.ones(2), "shape \\(n,\\) or \\(n, k\\)"),
])
def test_bad_outputs_and_labels(outputs: torch.Tensor, labels: torch.Tensor,
                                message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        pointwise_margins(outputs, labels)


def test_bad_margin_arguments() -> None:
    net = _mlp()
    x, y = _points(), torch.ones(9)
    with pytest.raises(WidenetError, match="degree"):
        margins_of(net, x, y, degree=0)
    with pytest.raises(WidenetError, match=r"torch\.Tensor"):
        margins_of(net, [[0.0, 1.0, 2.0]], torch.ones(1))
    with pytest.raises(WidenetError, match="scale"):
        homogeneity_error(net, x, 3, scale=-1.0)
    with pytest.raises(WidenetError, match="parameter_norm"):
        margins_from_outputs(torch.ones(2), torch.ones(2), parameter_norm=0.0, degree=1)
    with pytest.raises(WidenetError, match="1-D"):
        exponential_smoothed_min(torch.ones(2, 2))
    with pytest.raises(WidenetError, match="NaN"):
        logistic_smoothed_min(torch.tensor([float("inf")]))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    with pytest.raises(WidenetError, match="all parameters of the model are zero"):
        margins_of(net, x, y)


def test_norms_whose_power_leaves_the_float_range() -> None:
    """rho^-L was formed first: for rho = 1e-100, L = 4 it overflowed (an OverflowError), although
    q / rho^L = 1e-310 / 1e-400 = 1e90 is a float. (The logistic smoothed min of such a q is
    only accurate to round-off of order 1e-16 in q, its condition, so it is not checked.)"""
    tiny = margins_from_outputs(torch.tensor([1e-310], dtype=F64), torch.tensor([1]),
                                parameter_norm=1e-100, degree=4)
    assert tiny.normalized == pytest.approx(1e90, rel=1e-9)
    assert tiny.smoothed_exponential == pytest.approx(1e90, rel=1e-9)
    with pytest.raises(WidenetError, match=r"normalized margin 2 / .* beyond the floating-point"):
        margins_from_outputs(torch.tensor([2.0, 3.0], dtype=F64), torch.tensor([1, 1]),
                             parameter_norm=1e-160, degree=2)


def test_points_the_model_cannot_take() -> None:
    """model(x) and scale**degree were not checked: a RuntimeError, an OverflowError, and NaN for
    NaN points."""
    net, x = _mlp(), _points()
    with pytest.raises(WidenetError, match="model\\(x\\) failed: mat1 and mat2"):
        margins_of(net, x[:, :2], torch.ones(x.shape[0]))
    with pytest.raises(WidenetError, match="model\\(x\\) failed"):
        homogeneity_error(net, x.float(), 3)
    with pytest.raises(WidenetError, match="x contains NaN"):
        homogeneity_error(net, torch.full_like(x, math.nan), 3)
    with pytest.raises(WidenetError, match="outside the floating-point range"):
        homogeneity_error(net, x, 3, scale=1e300)


def test_widenet_layer_stacks_are_recognised() -> None:
    """widenet.nn's own Activation (a s + b|s| family) and Flatten were 'not known to be
    positively homogeneous'; a smooth Activation still is not."""
    torch.manual_seed(0)
    net = wn_nn.Sequential(wn_nn.Flatten(), wn_nn.Dense(4, 6), wn_nn.Activation("leaky_relu"),
                           wn_nn.Dense(6, 1)).double()
    assert homogeneity_degree(net) == 2
    assert homogeneity_error(net, torch.randn(5, 2, 2, dtype=F64), 2) < 1e-12
    with pytest.raises(WidenetError, match="not known to be positively homogeneous"):
        homogeneity_degree(wn_nn.Sequential(wn_nn.Dense(4, 6), wn_nn.Activation("tanh")))


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_parameter_norm_and_margin_at_extreme_parameter_scales(scale: float) -> None:
    """rho summed the squares of the parameters: at 1e-200 they underflowed (rho = 0, 'all
    parameters of the model are zero'), at 1e200 they overflowed (rho = inf). A linear net
    (L = 1) has gamma(c theta) = gamma(theta) for any c > 0."""
    net = nn.Sequential(nn.Linear(3, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, 2.0]], dtype=F64))
    labels = torch.ones(9)
    expected = margins_of(net, _points(), labels).normalized
    with torch.no_grad():
        net[0].weight.mul_(scale)
    # ||(1, -2, 2)|| = 3 exactly; the rescaling costs a few roundings.
    assert parameter_norm(net) == pytest.approx(3.0 * scale, rel=8 * torch.finfo(F64).eps,
                                                abs=0.0)
    assert margins_of(net, _points(), labels).normalized == pytest.approx(
        expected, rel=16 * torch.finfo(F64).eps)
