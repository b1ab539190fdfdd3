"""Activations: closed-form and quadrature duals against Monte Carlo, identities, edge of chaos."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq

import widenet.activations as A
from widenet import MLP, WidenetError, infinite_kernels

# (q1, q2, rho): unequal variances, both signs, and the degenerate ends rho = +-1.
COVARIANCES = [(1.0, 1.0, 0.0), (0.5, 2.0, 0.6), (2.0, 0.3, -0.8), (1.5, 1.5, 1.0),
               (0.7, 1.3, -1.0), (3.0, 0.2, 0.95)]
AB_FAMILY = [A.relu, A.absolute, A.identity, A.leaky_relu(0.2), A.ab(0.3, -0.7), A.ab(-1.2, 0.4)]
SAMPLES = 400_000
Z = 5.0  # tolerance in standard errors: a false alarm has probability ~6e-7 per comparison


def gaussian_pairs(q1: float, q2: float, rho: float, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(2, SAMPLES, generator=g, dtype=torch.float64)
    u = math.sqrt(q1) * z1
    v = math.sqrt(q2) * (rho * z1 + math.sqrt(max(1.0 - rho * rho, 0.0)) * z2)
    return u, v


def assert_matches_monte_carlo(exact: torch.Tensor, samples: torch.Tensor) -> None:
    """|exact - sample mean| <= Z standard errors (plus round-off for zero-variance samples)."""
    mean, se = samples.mean(), samples.std() / math.sqrt(samples.numel())
    assert abs(float(exact) - float(mean)) <= Z * float(se) + 1e-12, (float(exact), float(mean))


def cov(q1: float, q2: float, rho: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = torch.tensor
    return (t(q1, dtype=torch.float64), t(q2, dtype=torch.float64),
            t(rho * math.sqrt(q1 * q2), dtype=torch.float64))


@pytest.mark.parametrize("act", [*AB_FAMILY, A.erf, A.tanh, A.gelu, A.softplus, A.sin],
                         ids=lambda a: a.name)
@pytest.mark.parametrize(("q1", "q2", "rho"), COVARIANCES)
def test_duals_match_monte_carlo(act: A.Activation, q1: float, q2: float, rho: float) -> None:
    u, v = gaussian_pairs(q1, q2, rho, seed=hash((act.name, q1, q2, rho)) % 2**31)
    product, derivative_product = act.duals(*cov(q1, q2, rho))
    assert_matches_monte_carlo(product, act(u) * act(v))
    assert_matches_monte_carlo(derivative_product, act.derivative(u) * act.derivative(v))


@pytest.mark.parametrize(("q1", "q2", "rho"), COVARIANCES)
def test_relu_dual_is_the_arc_cosine_kernel(q1: float, q2: float, rho: float) -> None:
    """Cho & Saul: E[relu(u) relu(v)] = sqrt(q1 q2) (sin t + (pi - t) cos t) / (2 pi), t = acos rho,
    and E[relu'(u) relu'(v)] = (pi - t) / (2 pi)."""
    t = math.acos(rho)
    product, derivative_product = A.relu.duals(*cov(q1, q2, rho))
    expected = math.sqrt(q1 * q2) * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)
    assert float(product) == pytest.approx(expected, rel=1e-13, abs=1e-15)
    assert float(derivative_product) == pytest.approx((math.pi - t) / (2 * math.pi), rel=1e-13)


@pytest.mark.parametrize(("q1", "q2", "rho"), COVARIANCES)
def test_sin_quadrature_matches_closed_form(q1: float, q2: float, rho: float) -> None:
    """E[sin u sin v] = exp(-(q1 + q2) / 2) sinh(c), E[cos u cos v] = exp(-(q1 + q2) / 2)
    cosh(c)."""
    c = rho * math.sqrt(q1 * q2)
    product, derivative_product = A.sin.duals(*cov(q1, q2, rho))
    damping = math.exp(-(q1 + q2) / 2)
    assert float(product) == pytest.approx(damping * math.sinh(c), abs=1e-12)
    assert float(derivative_product) == pytest.approx(damping * math.cosh(c), abs=1e-12)


@pytest.mark.parametrize(("q1", "q2", "rho"), COVARIANCES)
def test_erf_quadrature_matches_closed_form(q1: float, q2: float, rho: float) -> None:
    quadrature = A.Quadrature(torch.erf, derivative=A.erf.derivative)
    for numeric, exact in zip(quadrature.duals(*cov(q1, q2, rho)), A.erf.duals(*cov(q1, q2, rho)),
                              strict=True):
        assert float(numeric) == pytest.approx(float(exact), abs=1e-7)


# relu's phi' is a step: the series' error bound (1.6e-2) warns, honestly
@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")
def test_quadrature_of_a_kink_is_close_to_the_closed_form() -> None:
    kinked = A.Quadrature(torch.relu)
    for q1, q2, rho in COVARIANCES:
        for numeric, exact in zip(kinked.duals(*cov(q1, q2, rho)), A.relu.duals(*cov(q1, q2, rho)),
                                  strict=True):
            assert float(numeric) == pytest.approx(float(exact), abs=2e-2)


def test_autograd_derivative_of_a_user_function() -> None:
    s = torch.linspace(-4, 4, 101, dtype=torch.float64)
    user = A.get_activation(lambda t: torch.tanh(t) + 0.1 * t**2)
    assert torch.allclose(user.derivative(s), 1 - torch.tanh(s) ** 2 + 0.2 * s, atol=1e-14)
    assert user.name == "<lambda>"


@pytest.mark.parametrize("act", [A.gelu, A.softplus, A.tanh, A.sin], ids=lambda a: a.name)
def test_given_derivatives_match_autograd(act: A.Quadrature) -> None:
    s = torch.linspace(-5, 5, 201, dtype=torch.float64)
    automatic = A.Quadrature(act.function).derivative(s)
    assert torch.allclose(act.derivative(s), automatic, atol=1e-12)


def assert_same_activation(left: A.Activation, right: A.Activation, scale: float = 1.0) -> None:
    """left = scale * right as functions, so their duals differ by scale^2."""
    s = torch.linspace(-3, 3, 61, dtype=torch.float64)
    assert torch.allclose(left(s), scale * right(s), atol=1e-15)
    for q1, q2, rho in COVARIANCES:
        for l_dual, r_dual in zip(left.duals(*cov(q1, q2, rho)), right.duals(*cov(q1, q2, rho)),
                                  strict=True):
            assert float(l_dual) == pytest.approx(scale**2 * float(r_dual), rel=1e-13, abs=1e-15)


def test_family_identities() -> None:
    assert_same_activation(A.ab(0.5, 0.5), A.relu)
    assert_same_activation(A.ab(0.0, 1.0), A.absolute)
    assert_same_activation(A.ab(0.7, 0.7), A.relu, scale=1.4)
    assert_same_activation(A.ab(-0.3, -0.3), A.relu, scale=-0.6)
    assert_same_activation(A.leaky_relu(0.0), A.relu)
    assert_same_activation(A.leaky_relu(1.0), A.identity)


def test_ab_with_equal_coefficients_is_a_scaled_relu_pointwise() -> None:
    s = torch.linspace(-3, 3, 61, dtype=torch.float64)
    assert torch.equal(A.ab(0.5, 0.5)(s), torch.relu(s))


@pytest.mark.parametrize(("act", "delta", "kappa"),
                         [(A.relu, 0.5, math.sqrt(2)), (A.absolute, 1.0, 1.0),
                          (A.identity, 0.0, 1.0)])
def test_delta_and_kappa(act: A.AbsLinear, delta: float, kappa: float) -> None:
    assert act.delta == pytest.approx(delta)
    assert act.kappa == pytest.approx(kappa)


@pytest.mark.parametrize("act", AB_FAMILY, ids=lambda a: a.name)
def test_edge_of_chaos_of_the_family(act: A.AbsLinear) -> None:
    """chi_1 = 1, and the normalized correlation map has varrho(1) = 1, varrho'(1) = 1,
    varrho(-1) = 2 Delta - 1 and varrho(rho) = (1 - Delta) rho + Delta J(rho)."""
    weight_var = act.edge_of_chaos() ** 2
    assert weight_var * float(act.derivative_second_moment(1.0)) == pytest.approx(1.0)

    def varrho(rho: float) -> float:
        return weight_var * float(act.dual(*cov(1.0, 1.0, rho)))

    assert varrho(1.0) == pytest.approx(1.0, rel=1e-14)
    assert varrho(-1.0) == pytest.approx(2 * act.delta - 1, abs=1e-14)
    for rho in (-0.9, -0.2, 0.3, 0.99):
        j = float(A.arc_cosine_j(torch.tensor(rho, dtype=torch.float64)))
        assert varrho(rho) == pytest.approx((1 - act.delta) * rho + act.delta * j, abs=1e-14)
    h = 1e-8  # varrho'(1 - h) = 1 - (2 Delta / pi) acos(1 - h) = 1 - O(sqrt(h))
    assert (varrho(1.0) - varrho(1.0 - h)) / h == pytest.approx(1.0, abs=1e-3)
    # Price's theorem: varrho'(rho) = sigma_w^2 E[phi'(u) phi'(v)], which is 1 at rho = 1.
    assert weight_var * float(act.derivative_dual(*cov(1.0, 1.0, 1.0))) == pytest.approx(1.0)


@pytest.mark.parametrize(("act", "bias_std"), [
    (A.tanh, 0.0), (A.erf, 0.0), (A.sin, 0.0), (A.gelu, 0.5), (A.gelu, 1.0),
    *[(act, b) for act in (A.tanh, A.erf, A.sin) for b in (0.1, 0.5)]], ids=str)
def test_edge_of_chaos_of_general_activations(act: A.Activation, bias_std: float) -> None:
    """At the returned sigma_w there is a fixed point q* of the variance map with chi_1 = 1;
    without bias q* = 0, sigma_w = 1/|phi'(0)|, and the map shrinks small variances."""
    weight_std = act.edge_of_chaos(bias_std)
    if bias_std == 0.0:
        assert weight_std == pytest.approx(1.0 / abs(float(act.derivative(torch.tensor(0.0)))))
        assert weight_std**2 * float(act.second_moment(0.1)) < 0.1
        return
    q_star = act._fixed_point_variance(bias_std**2)
    variance_map = weight_std**2 * float(act.second_moment(q_star)) + bias_std**2
    assert variance_map == pytest.approx(q_star, rel=1e-9)
    assert weight_std**2 * float(act.derivative_second_moment(q_star)) == pytest.approx(1.0)


def _gaussian_expectation(f, q: float) -> float:
    """E[f(u)], u ~ N(0, q), by adaptive quadrature in u, split at 0 and +-20 (where tanh's
    features end) so that a feature of width 1 is found at any q."""
    root = math.sqrt(q)

    def integrand(s: float) -> float:
        return f(s) * math.exp(-s * s / (2 * q)) / math.sqrt(2 * math.pi * q)

    edges = sorted({-40 * root, -min(20.0, 40 * root), 0.0, min(20.0, 40 * root), 40 * root})
    return sum(quad(integrand, lo, hi, limit=500, epsabs=0.0, epsrel=1e-13)[0]
               for lo, hi in itertools.pairwise(edges))


@pytest.mark.parametrize("bias_std", [8.0, 16.0, 30.0])
def test_tanh_edge_of_chaos_at_large_biases_against_adaptive_quadrature(bias_std) -> None:
    """q* solves q = E[tanh^2] / E[tanh'^2] + sigma_b^2, sigma_w = E[tanh'^2](q*)^(-1/2), with
    both moments by adaptive quadrature. At q* = 80, 300, 950 tanh' is a spike the Hermite
    series resolved badly or not at all: sigma_w was 0.4% and 21% off, and sigma_b = 30 raised
    ZeroDivisionError (E[tanh'^2] = 0 on every node)."""
    moment = _gaussian_expectation

    def square(s):
        return math.tanh(s) ** 2

    def slope(s):
        return (1.0 - math.tanh(s) ** 2) ** 2

    def gap(q):
        return q - moment(square, q) / moment(slope, q) - bias_std**2

    q_star = brentq(gap, bias_std**2, 4 * bias_std**2 + 100, xtol=1e-12, rtol=1e-14)
    expected = moment(slope, q_star) ** -0.5
    assert A.tanh.edge_of_chaos(bias_std) == pytest.approx(expected, rel=1e-10)


def _gelu(s: float) -> float:
    return 0.5 * s * (1.0 + math.erf(s / math.sqrt(2.0)))


def _gelu_slope(s: float) -> float:
    return 0.5 * (1.0 + math.erf(s / math.sqrt(2.0))) + s * math.exp(-s * s / 2) / math.sqrt(
        2 * math.pi)


def _sigmoid(s: float) -> float:
    return 1.0 / (1.0 + math.exp(-s))


EOC_REFERENCES = {  # phi, phi' as plain floats, for adaptive quadrature
    "tanh": (math.tanh, lambda s: 1.0 - math.tanh(s) ** 2),
    "erf": (math.erf, lambda s: 2.0 / math.sqrt(math.pi) * math.exp(-s * s)),
    "sin": (math.sin, math.cos),
    "gelu": (_gelu, _gelu_slope),
    "silu": (lambda s: s * _sigmoid(s), lambda s: _sigmoid(s) * (1.0 + s * _sigmoid(-s)))}


def _variance_map_at_its_edge_of_chaos(name: str, bias_std: float):
    """(q*, slope of the variance map V(q) = sigma_w^2 E[phi^2](q) + sigma_b^2 at q*,
    chi_1 = sigma_w^2 E[phi'^2](q*)) at the smallest q* solving the edge-of-chaos equations
    q = E[phi^2] / E[phi'^2] + sigma_b^2, sigma_w^2 = 1 / E[phi'^2](q), all by adaptive
    quadrature (widenet's moments are not used)."""
    phi, slope = EOC_REFERENCES[name]
    square = lambda s: phi(s) ** 2  # noqa: E731
    slope_square = lambda s: slope(s) ** 2  # noqa: E731

    def gap(q: float) -> float:
        return q - _gaussian_expectation(square, q) / _gaussian_expectation(slope_square, q) \
            - bias_std**2

    grid = np.geomspace(bias_std**2, 1e3, 61)
    lo = next(i for i in range(60) if gap(grid[i]) * gap(grid[i + 1]) < 0)
    q_star = brentq(gap, grid[lo], grid[lo + 1], xtol=1e-14, rtol=1e-13)
    weight_var = 1.0 / _gaussian_expectation(slope_square, q_star)
    h = 1e-4 * q_star
    map_slope = weight_var * (_gaussian_expectation(square, q_star + h)
                              - _gaussian_expectation(square, q_star - h)) / (2 * h)
    return q_star, map_slope, weight_var * _gaussian_expectation(slope_square, q_star)


@pytest.mark.parametrize(("name", "bias_std"), [("tanh", 0.1), ("tanh", 1.0), ("erf", 0.3),
                                                ("sin", 0.3), ("gelu", 0.5), ("gelu", 1.0)])
def test_edge_of_chaos_is_an_attracting_fixed_point_with_chi_one(name, bias_std) -> None:
    """Schoenholz et al.: at the returned sigma_w the variance map has a fixed point q* that
    attracts it (slope <= 1) with chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] = 1, checked by
    independent adaptive quadrature."""
    weight_std = A.get_activation(name).edge_of_chaos(bias_std)
    q_star, map_slope, _ = _variance_map_at_its_edge_of_chaos(name, bias_std)
    phi, slope = EOC_REFERENCES[name]
    assert weight_std**2 * _gaussian_expectation(lambda s: slope(s) ** 2, q_star) \
        == pytest.approx(1.0, rel=1e-9)
    assert weight_std**2 * _gaussian_expectation(lambda s: phi(s) ** 2, q_star) + bias_std**2 \
        == pytest.approx(q_star, rel=1e-9)
    assert map_slope < 1.0


@pytest.mark.parametrize("bias_std", [0.05, 0.1, 0.3])
def test_a_repelling_fixed_point_is_no_edge_of_chaos(bias_std) -> None:
    """gelu with a small bias: the only q* with chi_1 = 1 repels the variance map (slope 1.06,
    1.10, 1.05), so variances never settle there (above it they grow without bound, below it
    they fall to an ordered fixed point with chi_1 about 0.9), just as q* = 0 repels at
    sigma_b = 0. It was returned as the edge of chaos (sigma_w = 1.85, 1.73, 1.45), the
    default weight std of MLP(..., "gelu", bias_std=0.1)."""
    _, map_slope, chi = _variance_map_at_its_edge_of_chaos("gelu", bias_std)
    assert chi == pytest.approx(1.0, rel=1e-9)
    assert map_slope > 1.01
    with pytest.raises(WidenetError, match="no edge-of-chaos"):
        A.gelu.edge_of_chaos(bias_std)
    with pytest.raises(WidenetError, match="no edge-of-chaos"):
        MLP(3, [4], 1, "gelu", bias_std=bias_std)


@pytest.mark.parametrize("bias_std", [6e-7, 8e-7, 1e-6])
def test_a_slightly_repelling_fixed_point_is_no_edge_of_chaos(bias_std) -> None:
    """silu (a user function) with a tiny bias: its only q* with chi_1 = 1, q* = 2 sigma_b
    (g(q) = q^2 / 4 - sigma_b^2 for small q), repels the variance map with slope
    1 + sigma_w^2 E[phi phi''](q*) = 1 + q*/2 + O(q*^2) (phi = s/2 + s^2/4 + O(s^4)). Its
    excess, 6e-7 to 1e-6, was within the attraction test's tolerance of 1e-6, so silu got
    sigma_w = 2 - 2 sigma_b here while it raised at sigma_b = 3e-7, 1.2e-6 and 0.1."""
    q_star, map_slope, chi = _variance_map_at_its_edge_of_chaos("silu", bias_std)
    assert q_star == pytest.approx(2 * bias_std, rel=10 * q_star)
    assert chi == pytest.approx(1.0, rel=1e-9)
    assert map_slope - 1 == pytest.approx(q_star / 2, rel=1e-2)
    with pytest.raises(WidenetError, match="no edge-of-chaos"):
        A.get_activation(torch.nn.functional.silu).edge_of_chaos(bias_std)


EPS = float(torch.finfo(torch.float64).eps)


@pytest.mark.parametrize(("act", "cube", "half"), [(A.tanh, 4 / 3, False), (A.sin, 1 / 3, True),
                                                  (A.erf, None, None)], ids=str)
def test_edge_of_chaos_is_continuous_down_to_tiny_biases(act: A.Activation, cube, half) -> None:
    """sigma_w grows continuously from its sigma_b = 0 value, 1 / |phi'(0)|. For small q the
    EOC equation reads g(q) = q - M/D - sigma_b^2 = cube * q^3 - sigma_b^2 (Taylor series of
    M = E[phi^2], D = E[phi'^2]: tanh M = q - 2q^2 + 17q^3/3, D = 1 - 2q + 7q^2; sin
    M = q - q^2 + 2q^3/3, D = 1 - q + q^2), so q* = (sigma_b^2 / cube)^(1/3) and
    sigma_w = D(q*)^(-1/2) = 1 + q* (tanh), 1 + q*/2 (sin), up to O(q*^2); g's round-off,
    a few units (4 eps q) against its slope 3 cube q^2, adds a relative 4 eps / (3 cube q*^2)
    to q*.
    sigma_b = 1e-12 (tanh: q* = 9e-9, below the grid's 1e-8) and 1e-160 (sigma_b^2 a subnormal
    number) were refused as having no edge of chaos, while 0 and 1e-200 (sigma_b^2 = 0) were
    not."""
    at_zero = act.edge_of_chaos(0.0)
    assert at_zero == pytest.approx(1.0 / abs(float(act.derivative(torch.tensor(0.0)))))
    values = [act.edge_of_chaos(bias) for bias in (1e-200, 1e-160, 1e-14, 1e-12, 1e-10, 1e-8)]
    assert values == sorted(values)
    assert values[0] == at_zero
    if cube is None:
        return
    for bias, value in zip((1e-10, 1e-8), values[-2:], strict=True):
        q_star = (bias**2 / cube) ** (1 / 3)
        tolerance = 4 * EPS / (3 * cube * q_star**2) + 10 * q_star
        assert value - 1 == pytest.approx(q_star / 2 if half else q_star, rel=tolerance)


def test_tanh_edge_of_chaos_without_bias_is_one() -> None:
    assert A.tanh.edge_of_chaos(0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("function", "family"), [
    (torch.relu, A.relu), (torch.abs, A.absolute), (torch.nn.ReLU(), A.relu),
    (lambda s: torch.nn.functional.leaky_relu(s, 0.2), A.leaky_relu(0.2))],
    ids=["torch.relu", "torch.abs", "nn.ReLU()", "leaky_relu(0.2)"])
def test_edge_of_chaos_of_a_callable_with_a_kink_at_zero(function, family) -> None:
    """A kinked phi given as a callable has the edge of chaos of its ab-family twin,
    1 / sqrt(a^2 + b^2) with a^2 + b^2 = (phi'(0+)^2 + phi'(0-)^2) / 2 = lim E[phi'^2] as
    q -> 0. It was refused: autograd's phi'(0) is 0 for torch.relu and torch.abs, and
    1 / |phi'(0)| was taken as the slope."""
    weight_std = A.get_activation(function).edge_of_chaos()
    assert weight_std == pytest.approx(1.0 / math.hypot(family.a, family.b), rel=1e-14)


@pytest.mark.parametrize("function", [
    lambda s: [1.0], lambda s: s.sum(-1), lambda s: 1.0, torch.nn.ReLU], ids=[
        "list", "a reduction", "a number", "a class"])
def test_a_callable_that_is_not_elementwise_is_a_widenet_error(function) -> None:
    """A callable must map a tensor to a tensor of its shape; a list, a reduction, a number or
    a module class (nn.ReLU for nn.ReLU()) raised AttributeError, TypeError or a shape error
    from deep inside the kernel code, or silently gave a kernel of the reduced function."""
    def kernels() -> object:
        net = MLP(4, [5], 1, activation=function, weight_std=1.0, device="meta")
        return infinite_kernels(net, torch.randn(3, 4, dtype=torch.float64))

    with pytest.raises(WidenetError, match="activation"):
        kernels()


def test_a_module_instance_is_named_after_its_class() -> None:
    assert A.get_activation(torch.nn.ReLU()).name == "ReLU"


def test_no_edge_of_chaos_is_an_error() -> None:
    with pytest.raises(WidenetError, match="no edge-of-chaos"):
        A.softplus.edge_of_chaos(0.1)
    with pytest.raises(WidenetError, match="no edge-of-chaos"):  # q* = 0 repels for gelu
        A.gelu.edge_of_chaos(0.0)
    with pytest.raises(WidenetError, match="bias_std=1e"):  # sigma_b^2 overflows, not inf
        A.tanh.edge_of_chaos(1e200)
    with pytest.raises(WidenetError, match="no edge-of-chaos"):  # phi'(0) = 0: chi_1 = 0
        A.get_activation(lambda s: s * s).edge_of_chaos(0.0)


def test_duals_broadcast_scalar_variances_against_a_covariance_vector() -> None:
    c = torch.tensor([0.5, -0.3, 1.0], dtype=torch.float64)
    for act in (A.relu, A.erf, A.tanh):
        product, _ = act.duals(1.0, 1.0, c)
        assert product.shape == (3,)
        assert float(product[0]) == pytest.approx(float(act.dual(1.0, 1.0, 0.5)))


@pytest.mark.parametrize("act", [*AB_FAMILY, A.erf, A.tanh], ids=lambda a: a.name)
def test_duals_are_finite_at_zero_variance(act: A.Activation) -> None:
    zero = torch.zeros((), dtype=torch.float64)
    for value in (*act.duals(zero, zero, zero), *act.duals(zero, torch.tensor(2.0), zero)):
        assert torch.isfinite(value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_correlations_of_variances_below_the_smallest_normal_number(dtype: torch.dtype) -> None:
    """rho = c / (sqrt(q1) sqrt(q2)) stays exact for subnormal variances (1 / sqrt(q1 q2)
    overflowed there: rho came out NaN for c = 0 and 1 for c = q / 2)."""
    q = torch.tensor(torch.finfo(dtype).tiny / 64, dtype=dtype)
    expected = torch.tensor([0.0, 0.5, 1.0, -1.0], dtype=dtype)
    assert torch.allclose(A.correlation(q, q, expected * q)[1], expected, rtol=1e-6, atol=0)
    derivative_product = A.relu.derivative_dual(q, q, expected * q)
    assert torch.allclose(derivative_product, A.relu.derivative_dual(1.0, 1.0, expected).to(dtype))


@pytest.mark.parametrize(("dtype", "variance"), [(torch.float32, 1e10), (torch.float32, 1e30),
                                                (torch.float32, 2e38), (torch.float64, 1e20),
                                                (torch.float64, 1e150), (torch.float64, 1e308)])
def test_erf_duals_at_huge_variances(dtype: torch.dtype, variance: float) -> None:
    """At q1 = q2 = q and c = q, q/2, 0: det(I + 2 Sigma) = 1 + 4q, 1 + 4q + 3q^2, (1 + 2q)^2,
    closed forms without cancellation (taken here as q^2 times det / q^2, which cannot
    overflow). 4 q1 q2 (1 - rho^2) overflowed past q ~ 2e19 in float32 (inf * 0: NaN), arcsin
    of a ratio rounded to 1 lost the 1 - O(q^-1/2) gap, and 1 + 2q overflowed for q above half
    the largest number (2e38 in float32, 1e308 in float64: NaN)."""
    q = torch.tensor(variance, dtype=dtype)
    product, derivative_product = A.erf.duals(q, q, torch.tensor([1.0, 0.5, 0.0], dtype=dtype) * q)
    inverse = 1.0 / variance
    scaled_dets = [inverse**2 + 4 * inverse, inverse**2 + 4 * inverse + 3, (inverse + 2)**2]
    expected = [2 / math.pi * math.atan2(2 * share, math.sqrt(det))
                for share, det in zip((1.0, 0.5, 0.0), scaled_dets, strict=True)]
    rtol = 1e-6 if dtype == torch.float32 else 1e-14
    assert torch.allclose(product.double(), torch.tensor(expected, dtype=torch.float64),
                          rtol=rtol, atol=0)
    expected = [4 / math.pi * inverse / math.sqrt(det) for det in scaled_dets]
    assert torch.allclose(derivative_product.double(), torch.tensor(expected, dtype=torch.float64),
                          rtol=rtol, atol=0)


def test_duals_broadcast_over_kernel_shapes() -> None:
    q1 = torch.rand(4, 1, dtype=torch.float64) + 0.5
    q2 = torch.rand(1, 3, dtype=torch.float64) + 0.5
    c = 0.3 * torch.sqrt(q1 * q2)
    for act in (A.relu, A.erf, A.tanh):
        product, derivative_product = act.duals(q1, q2, c)
        assert product.shape == derivative_product.shape == (4, 3)
        assert float(product[2, 1]) == pytest.approx(float(act.dual(q1[2, 0], q2[0, 1], c[2, 1])))


@pytest.mark.parametrize(("spec", "message"), [
    ("swish", "unknown activation"), ("relu:2", "unknown activation"),
    ("leaky_relu:x", "bad leaky_relu slope"), (3.0, "a name or a callable")])
def test_bad_activation_specs(spec: object, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        A.get_activation(spec)



def test_a_misspelt_name_is_told_the_names_and_the_closest_one() -> None:
    """A string can only be a name: the message lists the names (not the Python-only
    alternatives, which a command line cannot pass) and suggests the closest."""
    with pytest.raises(WidenetError) as raised:
        A.get_activation("relux")
    message = str(raised.value)
    assert "did you mean 'relu'?" in message
    assert "callable" not in message
    assert "leaky_relu:SLOPE" in message

def test_bad_family_members() -> None:
    with pytest.raises(WidenetError, match="zero function"):
        A.ab(0, 0)
    with pytest.raises(WidenetError, match="finite"):
        A.ab(float("nan"), 1)
    with pytest.raises(WidenetError, match="at most"):
        A.Quadrature(torch.tanh, degree=10**5)


def test_names_resolve() -> None:
    assert A.get_activation("abs") is A.absolute
    assert A.get_activation("leaky_relu:0.1").a == pytest.approx(0.55)
    assert A.get_activation(A.relu) is A.relu


def test_mixed_dtypes_compute_in_the_promoted_dtype() -> None:
    q = torch.tensor(1.0, dtype=torch.float32)
    c = torch.tensor(0.3, dtype=torch.float64)
    assert A.relu.dual(q, q, c).dtype == torch.float64


@pytest.mark.parametrize("make", [lambda: A.ab(1e200, 0), lambda: A.ab(1, -1e160),
                                  lambda: A.leaky_relu(1e300)])
def test_coefficients_whose_squares_overflow_are_refused(make) -> None:
    """a^2 + b^2 (the duals' and second moment's factor) must be a float64 number: 1e300 was
    taken and raised a bare OverflowError in the first kernel."""
    with pytest.raises(WidenetError, match=r"a\^2 \+ b\^2 overflows float64"):
        make()
