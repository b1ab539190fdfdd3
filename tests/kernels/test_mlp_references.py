"""The MLP side of widenet against references written here, independently of its code:
a 2-D Gauss-Hermite rule for the Gaussian duals, Cho & Saul's arc-cosine kernel and
Williams' erf kernel in a numpy NNGP/NTK recursion, the erf edge of chaos from its closed-form
moments, and Monte Carlo over finite nets (tolerances in standard errors of the mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy.optimize import brentq
from scipy.special import erf as scipy_erf

import widenet as wn
import widenet.activations as A

Z = 5.0  # Monte Carlo tolerance in standard errors

SMOOTH = {  # phi and phi' in numpy
    "tanh": (np.tanh, lambda s: 1.0 - np.tanh(s) ** 2),
    "erf": (scipy_erf, lambda s: 2.0 / np.sqrt(np.pi) * np.exp(-s * s)),
    "sin": (np.sin, np.cos),
    "softplus": (lambda s: np.logaddexp(0.0, s), lambda s: 0.5 * (1.0 + np.tanh(s / 2))),
    "gelu": (lambda s: 0.5 * s * (1.0 + scipy_erf(s / np.sqrt(2.0))),
             lambda s: 0.5 * (1.0 + scipy_erf(s / np.sqrt(2.0)))
             + s * np.exp(-0.5 * s * s) / np.sqrt(2.0 * np.pi)),
}


def gauss_hermite_2d(f, q1: float, q2: float, c: float, nodes: int = 250) -> float:
    """E[f(u) f(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by a tensor Gauss-Hermite rule on
    u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2) (250 nodes: tanh, whose poles
    at +-i pi / 2 slow the rule, to 1e-13 at q = 1.5)."""
    z, w = hermegauss(nodes)
    w = w / w.sum()
    s1, s2 = math.sqrt(q1), math.sqrt(q2)
    rho = 0.0 if s1 * s2 == 0.0 else min(1.0, max(-1.0, c / (s1 * s2)))
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    u = s1 * z1
    v = s2 * (rho * z1 + math.sqrt(max(0.0, 1.0 - rho * rho)) * z2)
    return float((np.outer(w, w) * f(u) * f(v)).sum())


GRID = [(q1, q2, f) for q1 in (0.0, 1e-6, 0.4, 1.5) for q2 in (0.0, 0.7, 1.5)
        for f in (-1.0, -0.6, 0.0, 0.3, 1.0)]


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_duals_against_a_2d_gauss_hermite_rule(name: str) -> None:
    """Both duals on a grid of (q1, q2, c) with c = +-sqrt(q1 q2) (identical and antipodal
    points) and q = 0 (a zero input)."""
    act = A.get_activation(name)
    f, df = SMOOTH[name]
    for q1, q2, fraction in GRID:
        c = fraction * math.sqrt(q1 * q2)
        got = [float(t) for t in act.duals(q1, q2, c)]
        expected = [gauss_hermite_2d(g, q1, q2, c) for g in (f, df)]
        assert got == pytest.approx(expected, rel=0, abs=1e-11), (q1, q2, fraction)


def arc_cosine(q1: np.ndarray, q2: np.ndarray, c: np.ndarray, a: float, b: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The duals of a s + b |s| through Cho & Saul's arc-cosine kernels of degree 1 and 0:
    E[relu(u) relu(v)] = sqrt(q1 q2) (sin t + (pi - t) cos t) / (2 pi), E[step step] =
    (pi - t) / (2 pi), t = arccos rho; a s + b|s| = (a + b) relu(s) + (b - a) relu(-s)."""
    root = np.sqrt(q1) * np.sqrt(q2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.arccos(np.clip(np.where(root > 0, c / root, 0.0), -1.0, 1.0))
    k1 = root * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)
    k1_anti = root * (np.sin(np.pi - t) + t * np.cos(np.pi - t)) / (2 * np.pi)  # relu(u) relu(-v)
    k0, k0_anti = (np.pi - t) / (2 * np.pi), t / (2 * np.pi)
    plus, minus = a + b, b - a
    product = (plus**2 + minus**2) * k1 + 2 * plus * minus * k1_anti
    derivative = (plus**2 + minus**2) * k0 - 2 * plus * minus * k0_anti
    return product, derivative


def williams_erf(q1: np.ndarray, q2: np.ndarray, c: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Williams (1997): (2/pi) arcsin(2c / sqrt((1 + 2q1)(1 + 2q2))), and its derivative dual
    (4/pi) ((1 + 2q1)(1 + 2q2) - 4c^2)^(-1/2)."""
    det = (1 + 2 * q1) * (1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(det)), 4 / np.pi / np.sqrt(det - 4 * c * c)


def numpy_recursion(x1: np.ndarray, x2: np.ndarray, depth: int, weight_std: float,
                    bias_std: float, duals) -> tuple[np.ndarray, np.ndarray]:
    """neural-tangents' Dense(W_std, b_std) in the NTK parametrization, layer by layer."""
    w, b, d = weight_std**2, bias_std**2, x1.shape[1]
    sigma = w * x1 @ x2.T / d + b
    q1 = (w * (x1 * x1).sum(1) / d + b)[:, None]
    q2 = (w * (x2 * x2).sum(1) / d + b)[None, :]
    theta = sigma.copy()
    for _ in range(depth):
        product, derivative = duals(q1, q2, sigma)
        q1, q2 = w * duals(q1, q1, q1)[0] + b, w * duals(q2, q2, q2)[0] + b
        sigma = w * product + b
        theta = sigma + w * derivative * theta
    return sigma, theta


def rectangular_points() -> tuple[torch.Tensor, torch.Tensor]:
    """x1 (4 points) and x2 (3 points) of norms from 1e-3 to 40, one zero point."""
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(4, 5, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    x1[0] *= 1e-3
    x1[3] = 0.0
    x2[1] *= 40.0
    return x1, x2


@pytest.mark.parametrize(("activation", "duals"), [
    (A.relu, lambda q1, q2, c: arc_cosine(q1, q2, c, 0.5, 0.5)),
    (A.absolute, lambda q1, q2, c: arc_cosine(q1, q2, c, 0.0, 1.0)),
    (A.ab(0.3, -1.2), lambda q1, q2, c: arc_cosine(q1, q2, c, 0.3, -1.2)),
    (A.erf, williams_erf)], ids=["relu", "abs", "ab(0.3,-1.2)", "erf"])
@pytest.mark.parametrize("depth", [0, 1, 4])
@pytest.mark.parametrize(("weight_std", "bias_std"), [(1.3, 0.0), (1.6, 0.5)])
def test_mlp_kernels_against_a_numpy_recursion(activation, duals, depth, weight_std,
                                               bias_std) -> None:
    """Rectangular x1 != x2, points of very different norms and a zero point; the symmetric
    call agrees with the rectangular one on x1 x x1, and a single point with its diagonal."""
    x1, x2 = rectangular_points()
    net = wn.MLP(5, [7] * depth, 2, activation=activation, weight_std=weight_std,
                 bias_std=bias_std, device="meta")
    kernels = wn.infinite_kernels(net, x1, x2)
    sigma, theta = numpy_recursion(x1.numpy(), x2.numpy(), depth, weight_std, bias_std, duals)
    scale = np.abs(theta).max()
    np.testing.assert_allclose(kernels.nngp.numpy(), sigma, rtol=1e-12, atol=1e-14 * scale)
    np.testing.assert_allclose(kernels.ntk.numpy(), theta, rtol=1e-12, atol=1e-14 * scale)
    single = wn.infinite_kernels(net, x1[2:3])
    torch.testing.assert_close(single.ntk, wn.infinite_kernels(net, x1).ntk[2:3, 2:3],
                               rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("bias_std", [0.05, 0.3, 1.0, 4.0])
def test_erf_edge_of_chaos_from_its_closed_form_moments(bias_std: float) -> None:
    """E[erf(u)^2] = (2/pi) arcsin(2q / (1 + 2q)) and E[erf'(u)^2] = (4/pi) / sqrt(1 + 4q):
    q* solves q = E[erf^2] / E[erf'^2] + sigma_b^2, sigma_w = E[erf'^2](q*)^(-1/2); without
    bias sigma_w = 1 / erf'(0) = sqrt(pi) / 2."""
    def moments(q):
        return 2 / math.pi * math.asin(2 * q / (1 + 2 * q)), 4 / math.pi / math.sqrt(1 + 4 * q)

    def gap(q):
        square, slope = moments(q)
        return q - square / slope - bias_std**2

    q_star = brentq(gap, bias_std**2, 10 * bias_std**2 + 10, xtol=1e-15, rtol=1e-15)
    assert A.erf.edge_of_chaos(bias_std) == pytest.approx(moments(q_star)[1] ** -0.5, rel=1e-10)
    assert A.erf.edge_of_chaos(0.0) == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-15)


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf"])
def test_finite_nets_average_to_the_limit(activation: str) -> None:
    """Over 120 seeds of a 3-hidden-layer net of width 512 with biases, the mean of
    (1/3) sum_a f_a(x) f_a(x') over seeds is the NNGP, and the mean empirical NTK is the NTK,
    each within Z standard errors of the mean over seeds (entry by entry; the outputs of one
    seed share their features, so they are averaged before the error is taken)."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[1] *= 2.5
    options = {"activation": activation, "weight_std": 1.4, "bias_std": 0.3,
               "dtype": torch.float64}
    limit = wn.infinite_kernels(wn.MLP(4, [512] * 3, 3, device="meta", **options), x)
    products, ntks = [], []
    for seed in range(120):
        net = wn.MLP(4, [512] * 3, 3, seed=seed, **options)
        with torch.no_grad():
            out = net(x)
        products.append(torch.einsum("ia,ja->ij", out, out)[None] / 3)  # outputs share h
        ntks.append(wn.empirical_ntk(net, x).ntk[None])
    for samples, expected in ((torch.cat(products), limit.nngp), (torch.cat(ntks), limit.ntk)):
        error = samples.std(0) / math.sqrt(samples.shape[0])
        assert bool(((samples.mean(0) - expected).abs() <= Z * error).all()), (
            ((samples.mean(0) - expected) / error).tolist())


def sigmoid(s: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(s / 2))


MODERATE = {**SMOOTH,  # named activations, and callables (duals by the series, phi' by autograd)
            "sigmoid": (sigmoid, lambda s: sigmoid(s) * (1.0 - sigmoid(s))),
            "cos": (np.cos, lambda s: -np.sin(s))}
CALLABLES = {"sigmoid": torch.sigmoid, "cos": torch.cos}


def gauss_hermite_duals(name: str, nodes: int):
    """(q1, q2, c) arrays -> both duals of MODERATE[name] by :func:`gauss_hermite_2d`, computed
    once per distinct (q1, q2, c) (a symmetric kernel repeats each pair)."""
    f, df = MODERATE[name]

    def duals(q1: np.ndarray, q2: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arrays = np.broadcast_arrays(q1, q2, c)
        triples, inverse = np.unique(np.stack([a.ravel() for a in arrays], 1), axis=0,
                                     return_inverse=True)
        values = np.array([[gauss_hermite_2d(g, *t, nodes) for g in (f, df)] for t in triples])
        return tuple(values[inverse.ravel(), i].reshape(arrays[0].shape) for i in range(2))

    return duals


def correlated_points() -> torch.Tensor:
    """x0 = sqrt(2) (1, 0); points of norm 1.3 |x0| at correlation rho with x0 for rho in
    (-0.999, -0.5, 0, 0.5, 0.999); a zero point, the antipode -x0 and a duplicate of x0
    (rho = -1 and 1). Values rounded to float32, so that both dtypes take the same inputs."""
    rhos = torch.tensor([-0.999, -0.5, 0.0, 0.5, 0.999], dtype=torch.float64)
    x0 = torch.tensor([[math.sqrt(2.0), 0.0]], dtype=torch.float64)
    others = 1.3 * math.sqrt(2.0) * torch.stack([rhos, torch.sqrt(1 - rhos * rhos)], 1)
    points = torch.cat([x0, others, torch.zeros(1, 2, dtype=torch.float64), -x0, x0])
    return points.float().double()


@pytest.mark.parametrize("bias_std", [0.0, 0.3])
@pytest.mark.parametrize("name", sorted(MODERATE))
def test_kernels_at_moderate_variances_against_a_2d_gauss_hermite_recursion(name: str,
                                                                            bias_std: float
                                                                            ) -> None:
    """NNGP and NTK of a 2-hidden-layer MLP (sigma_w = 1.2, variances up to 4) at the
    correlations of :func:`correlated_points`, in float64 and float32, against the recursion
    with 2-D Gauss-Hermite duals. Tolerance: the reference's quadrature error, estimated as the
    change from 150 to 300 nodes, plus 16 eps (float64) of the kernel's scale per dual in the
    deepest product of the recursion (widenet's duals are measured within 2e-15 = 9 eps at these
    variances, docs/kernels.md, the rest for the reference's own round-off; the NTK's last term
    is a product of depth + 1 = 3 of them), plus one float32 ulp for the float32 result
    (computed in float64, rounded once)."""
    points = correlated_points()
    activation = CALLABLES.get(name, name)
    net = wn.MLP(2, [5, 5], 1, activation=activation, weight_std=1.2, bias_std=bias_std,
                 device="meta")
    x = points.numpy()
    coarse, fine = (numpy_recursion(x, x, 2, 1.2, bias_std, gauss_hermite_duals(name, nodes))
                    for nodes in (150, 300))
    for dtype in (torch.float64, torch.float32):
        kernels = wn.infinite_kernels(net, points.to(dtype))
        for got, reference, estimate in ((kernels.nngp, fine[0], np.abs(fine[0] - coarse[0])),
                                         (kernels.ntk, fine[1], np.abs(fine[1] - coarse[1]))):
            scale = np.sqrt(np.outer(np.diag(reference), np.diag(reference)))
            tolerance = estimate + 3 * 16 * np.finfo(np.float64).eps * scale
            if dtype == torch.float32:
                tolerance = tolerance + np.finfo(np.float32).eps * np.abs(reference)
            error = np.abs(got.double().numpy() - reference)
            assert (error <= tolerance).all(), (dtype, float((error / tolerance).max()))
