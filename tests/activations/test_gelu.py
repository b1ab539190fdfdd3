"""gelu's closed-form duals (widenet/activations/closed_form.py, Gelu) against independent
references: nested adaptive 1-D quadrature with the kink resolved, Monte Carlo, the Mehler
series at moderate variances, and limits that follow from phi(s) = s Phi(s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import erf as scipy_erf

import widenet.activations as A

SERIES_GELU = A.Quadrature(torch.nn.functional.gelu, "gelu (series)", derivative=A.gelu.derivative)


def gelu(s: float) -> float:
    return 0.5 * s * (1.0 + scipy_erf(s / math.sqrt(2.0)))


def gelu_derivative(s: float) -> float:
    return 0.5 * (1.0 + scipy_erf(s / math.sqrt(2.0))) + s * math.exp(-0.5 * s * s) / math.sqrt(
        2.0 * math.pi)


def density(t: float) -> float:
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def adaptive(f, edges: list[float]) -> float:
    """The integral of f over [-40, 40] by QUADPACK, split at the given points (kept inside)."""
    points = sorted({p for p in edges if -40.0 < p < 40.0})
    return integrate.quad(f, -40.0, 40.0, points=points or None, limit=400, epsabs=0.0,
                          epsrel=1e-13)[0]


def reference(f, q1: float, q2: float, rho: float) -> float:
    """E[f(u) f(v)] with u = sqrt(q1) x, v = sqrt(q2) (rho x + sqrt(1 - rho^2) y), x, y standard
    normal: nested adaptive quadrature, each level split at the kink of f (where its argument
    is 0) and 10 of f's widths to either side, so large variances are resolved."""
    a, b = math.sqrt(q1), math.sqrt(q2)
    s = math.sqrt((1.0 - rho) * (1.0 + rho))

    def inner(x: float) -> float:
        if s == 0.0 or b == 0.0:
            return f(b * rho * x)
        center, width = -rho * x / s, 10.0 / (b * s)
        return adaptive(lambda y: f(b * (rho * x + s * y)) * density(y),
                        [center - width, center, center + width])

    edges = [0.0] if a == 0.0 else [-10.0 / a, 0.0, 10.0 / a]
    return adaptive(lambda x: f(a * x) * inner(x) * density(x), edges)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize(("q1", "q2"), [(0.0, 1.0), (0.3, 0.3), (1.0, 2.5), (4.0, 0.5),
                                        (100.0, 100.0), (1000.0, 30.0), (1e4, 1e4)])
def test_duals_match_nested_quadrature(q1: float, q2: float) -> None:
    """Both duals to 1e-12 relative to sqrt(E[f(u)^2] E[f(v)^2]) (measured: 2.3e-15), for
    rho in [-1, 1] including +-1 and variances up to 1e4, where the series was 1e-2 off."""
    for rho in (-1.0, -0.9, -0.3, 0.0, 0.5, 0.99, 1.0):
        computed = A.gelu.duals(torch.tensor(q1, dtype=torch.float64),
                                torch.tensor(q2, dtype=torch.float64),
                                torch.tensor(rho * math.sqrt(q1 * q2), dtype=torch.float64))
        for which, f in enumerate((gelu, gelu_derivative)):
            scale = math.sqrt(reference(f, q1, q1, 1.0) * reference(f, q2, q2, 1.0))
            expected = reference(f, q1, q2, rho)
            assert abs(float(computed[which]) - expected) <= 1e-12 * scale, (which, rho)


@pytest.mark.parametrize("q", [350.0, 1000.0, 1e5, 1e8])
def test_second_moments_at_large_variance(q: float) -> None:
    """E[phi^2] and E[phi'^2] against 1-D adaptive quadrature to 1e-12 relative; the Mehler
    series gave E[phi'^2] = 0.5110 at q = 1000 (true 0.50177) without a warning."""
    root = math.sqrt(q)
    for which, f in enumerate((gelu, gelu_derivative)):
        expected = adaptive(lambda x, f=f: f(root * x) ** 2 * density(x),
                            [-10.0 / root, 0.0, 10.0 / root])
        computed = float((A.gelu.second_moment(q), A.gelu.derivative_second_moment(q))[which])
        assert computed == pytest.approx(expected, rel=1e-12, abs=0.0)


@pytest.mark.parametrize(("q1", "q2", "rho"), [(1.0, 1.0, 0.7), (0.2, 5.0, -0.6),
                                               (400.0, 900.0, 0.95), (1e4, 2.0, -1.0)])
def test_duals_match_monte_carlo(q1: float, q2: float, rho: float) -> None:
    """1e6 samples of (u, v): both duals within 5 standard errors."""
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 10**6, generator=generator, dtype=torch.float64)
    u = math.sqrt(q1) * x
    v = math.sqrt(q2) * (rho * x + math.sqrt((1 - rho) * (1 + rho)) * y)
    c = torch.tensor(rho * math.sqrt(q1 * q2), dtype=torch.float64)
    exact = A.gelu.duals(torch.tensor(q1, dtype=torch.float64),
                         torch.tensor(q2, dtype=torch.float64), c)
    for which, f in enumerate((A.gelu.function, A.gelu.derivative)):
        samples = f(u) * f(v)
        error = samples.std() / math.sqrt(samples.numel())
        assert abs(float(samples.mean() - exact[which])) <= 5.0 * float(error)


def test_series_agrees_at_moderate_variance() -> None:
    """The Mehler series (resolved at q <= 25) and the closed form agree to 1e-12 of the
    diagonal scale on a grid of variances (0 included) and correlations."""
    q = torch.tensor([0.0, 1e-6, 0.3, 1.0, 4.0, 25.0], dtype=torch.float64)
    rho = torch.linspace(-1.0, 1.0, 21, dtype=torch.float64)
    q1, q2 = q[:, None, None], q[None, :, None]
    c = rho * torch.sqrt(q1) * torch.sqrt(q2)
    for closed, series in zip(A.gelu.duals(q1, q2, c), SERIES_GELU.duals(q1, q2, c), strict=True):
        diagonal = torch.diagonal(closed[..., -1])  # rho = 1
        scale = torch.sqrt(diagonal[:, None, None] * diagonal[None, :, None])
        assert bool(((closed - series).abs() <= 1e-12 * scale + 1e-300).all())


def test_limits_and_extreme_variances() -> None:
    """q = 0: phi(u) = 0 and phi'(u) = 1/2, so the duals are 0 and 1/4. rho = 0: E[phi(u)]
    E[phi(v)] = q1 q2 / (2 pi sqrt((1 + q1)(1 + q2))) and 1/4. q -> inf: phi(u) phi(v) ->
    relu(u) relu(v), E[phi'^2] -> 1/2. At rho = -1, E[phi(u) phi(-u)] = -E[u^2 Phi(u) Phi(-u)]
    = -(C + O(1/q)) / sqrt(q), C = integral of s^2 Phi(s) Phi(-s) ds / sqrt(2 pi): the closed form's
    terms each exceed it by q (1/4 + arcsin(r) / (2 pi) cancelled to a positive 3e12 at
    q = 1e30, then to -0.0625), so sqrt(q) times it must agree at q = 1e8 and 1e30."""
    zero = torch.zeros((), dtype=torch.float64)
    assert [float(x) for x in A.gelu.duals(zero, 3.0, zero)] == [0.0, 0.25]
    q1, q2 = 2.0, 7.0
    product, derivative = A.gelu.duals(q1, q2, 0.0)
    assert float(product) == pytest.approx(q1 * q2 / (2 * math.pi * math.sqrt(3.0 * 8.0)),
                                           rel=1e-15)
    assert float(derivative) == 0.25
    scaled = []
    for q in (1e8, 1e30):
        t = torch.tensor(q, dtype=torch.float64)
        same, same_derivative = A.gelu.duals(t, t, t)
        assert float(same) == pytest.approx(q / 2, rel=1e-6)
        assert float(same_derivative) == pytest.approx(0.5, rel=1e-3)
        scaled.append(float(A.gelu.dual(t, t, -t)) * math.sqrt(q))
    constant = adaptive(lambda s: gelu(s) * gelu(-s) * density(0.0), [0.0])  # -C
    assert scaled == pytest.approx([constant, constant], rel=1e-7)
    relu_like = A.relu.duals(1e8, 1e8, 0.3e8)
    assert np.allclose([float(x) for x in A.gelu.duals(1e8, 1e8, 0.3e8)],
                       [float(x) for x in relu_like], rtol=1e-3)


def test_derivative_dual_is_the_covariance_derivative() -> None:
    """Price's theorem: E[phi'(u) phi'(v)] = d/dc E[phi(u) phi(v)], by central differences
    (step 1e-5, error O(h^2) ~ 1e-10)."""
    q1, q2, h = 2.0, 3.0, 1e-5
    c = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    slope = (A.gelu.dual(q1, q2, c + h) - A.gelu.dual(q1, q2, c - h)) / (2 * h)
    assert torch.allclose(slope, A.gelu.derivative_dual(q1, q2, c), rtol=0, atol=1e-8)
