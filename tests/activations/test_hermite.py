"""The Mehler series of the numerical activation duals (widenet/activations/_hermite.py):
accuracy against exact duals and a brute-force 2-D rule, PSD by construction, edge cases."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate

import widenet.activations as A
from widenet.activations import _hermite, _hermite_bound
from widenet.activations._gaussian import common_panels, gaussian_panels
from widenet.activations.quadrature import Quadrature

GENERIC_ERF = A.Quadrature(torch.erf, "erf", derivative=A.erf.derivative)
SERIES_GELU = A.Quadrature(torch.nn.functional.gelu, "gelu", derivative=A.gelu.derivative)


def brute_force_duals(act: A.Activation, q1: float, q2: float, rho: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Both duals by a composite Gauss-Legendre rule in the Cholesky coordinates (z1, z2) on
    [-10, 10]^2: 50 panels of 16 nodes per axis, which resolve phi(sqrt(q) z) for q <= 4."""
    nodes, weights = np.polynomial.legendre.leggauss(16)
    edges = np.linspace(-10.0, 10.0, 51)
    half = np.diff(edges)[:, None] / 2.0
    z = torch.from_numpy(((edges[:-1, None] + edges[1:, None]) / 2.0 + half * nodes).ravel())
    w = torch.from_numpy((half * weights).ravel()) * torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    complement = torch.sqrt((1 - rho) * (1 + rho))
    v = math.sqrt(q2) * (rho[:, None, None] * z[:, None] + complement[:, None, None] * z)
    return tuple((f(v) @ w) @ (f(math.sqrt(q1) * z) * w) for f in (act.function, act.derivative))


def covariance(q1: float, q2: float, rho: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.tensor(q1, dtype=torch.float64), torch.tensor(q2, dtype=torch.float64),
            rho * math.sqrt(q1 * q2))


RHOS = torch.tensor([-1.0, -0.9, -0.3, 0.0, 0.5, 0.99, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("act", [A.tanh, SERIES_GELU, A.softplus], ids=lambda a: a.name)
@pytest.mark.parametrize(("q1", "q2"), [(0.3, 0.3), (1.0, 2.5), (4.0, 0.5)])
def test_duals_match_a_brute_force_rule(act: A.Quadrature, q1: float, q2: float) -> None:
    computed = act.duals(*covariance(q1, q2, RHOS))
    reference = brute_force_duals(act, q1, q2, RHOS)
    for which in range(2):
        scale = math.sqrt(float(brute_force_duals(act, q1, q1, torch.ones(1))[which])
                          * float(brute_force_duals(act, q2, q2, torch.ones(1))[which]))
        assert torch.allclose(computed[which], reference[which], rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("q", [1e-8, 0.1, 1.0, 4.0, 25.0])
def test_generic_erf_matches_its_closed_form(q: float) -> None:
    """erf through the series against the exact duals, up to variances where erf(sqrt(q) z)
    is steep (documented: 3e-9 at q = 25)."""
    rho = torch.linspace(-1, 1, 41, dtype=torch.float64)
    for computed, exact in zip(GENERIC_ERF.duals(*covariance(q, q, rho)),
                               A.erf.duals(*covariance(q, q, rho)), strict=True):
        assert torch.allclose(computed, exact, rtol=0, atol=1e-8 * float(exact.abs().max()))


@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")  # tanh's phi' spike
def test_a_step_is_exact_at_rho_zero_and_one_and_close_between() -> None:
    """At q = 1e30 erf(sqrt(q) z) is sign(z): E[sign u sign v] = (2/pi) arcsin(rho). The series
    of the interpolant is exact at rho = 0, +-1 and within the documented 6e-3 elsewhere."""
    rho = torch.linspace(-1, 1, 201, dtype=torch.float64)
    product, derivative = GENERIC_ERF.duals(*covariance(1e30, 1e30, rho))
    exact = (2 / math.pi) * torch.asin(rho)
    assert float((product - exact).abs().max()) < 6e-3
    for index in (0, 100, 200):
        assert float(product[index]) == pytest.approx(float(exact[index]), abs=1e-13)
    assert bool(torch.isfinite(derivative).all())
    assert float(derivative.abs().max()) < 1e-12  # E[phi' phi'] ~ q^(-1/2)


@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")  # extreme variances on purpose
def test_kernel_matrices_are_psd_by_construction() -> None:
    """Points with variances from 0 to 1e30 and a random correlation matrix: both dual matrices
    are PSD to round-off, while the earlier per-pair 2-D quadrature missed by about 1e-4."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    features[5] = features[4]  # a duplicate
    features[7] = -features[6]  # an antipode
    q = torch.logspace(-10, 30, 40, dtype=torch.float64)
    q[0] = 0.0
    directions = features / features.norm(dim=1, keepdim=True)
    c = directions @ directions.T * torch.sqrt(q[:, None]) * torch.sqrt(q[None, :])
    for act in (A.tanh, SERIES_GELU, A.softplus, A.Quadrature(lambda s: s * torch.sigmoid(s))):
        for matrix in act.duals(q[:, None], q[None, :], c):
            assert bool(torch.isfinite(matrix).all())
            smallest = float(torch.linalg.eigvalsh(matrix)[0])
            assert smallest >= -1e3 * 40 * torch.finfo(torch.float64).eps * float(
                matrix.abs().max()), (act.name, smallest)


@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")  # tanh's phi' spike
def test_diagonal_is_the_second_moment_and_parseval_holds() -> None:
    q = torch.tensor([0.0, 0.5, 3.0, 1e6], dtype=torch.float64)
    for act in (A.tanh, A.softplus):
        assert torch.allclose(act.dual(q, q, q), act.second_moment(q), rtol=1e-14, atol=0)
        assert torch.allclose(act.derivative_dual(q, q, q), act.derivative_second_moment(q),
                              rtol=1e-14, atol=0)
    # sum_k a_k^2 over a rule's coefficients is the same rule's E[phi^2] (an orthogonal basis)
    z, basis = _hermite._rule(64)  # basis[:, 0] = w_i h_0(z_i) = w_i
    values, weights = np.tanh(1.3 * z), basis[:, 0]
    assert float(((values @ basis) ** 2).sum()) == pytest.approx(
        float((weights * values**2).sum()), rel=1e-14)


@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")  # tanh at q = 1e4, 1e30
def test_coefficients_of_a_point_do_not_depend_on_the_others() -> None:
    """What makes a blocked kernel one Gram matrix: a point's coefficients are the same, to
    the round-off of a matrix product, whichever other variances share the call."""
    q = torch.tensor([0.2, 1e4, 3.0, 0.0, 1e30, 3.0], dtype=torch.float64)
    together = _hermite.hermite_series(torch.tanh, q, 1024).coefficients
    assert torch.equal(together[:, 2], together[:, 5])
    for i in range(q.shape[0]):
        alone = _hermite.hermite_series(torch.tanh, q[i:i + 1], 1024).coefficients[:, 0]
        count = alone.shape[0]
        assert torch.allclose(together[:count, i], alone, rtol=0, atol=1e-15)
        assert bool((together[count:, i] == 0).all())


@pytest.mark.parametrize("powers", [1, 2**20])
def test_mehler_sum_against_direct_powers(monkeypatch: pytest.MonkeyPatch, powers: int) -> None:
    """Horner's rule (POWERS = 1), grouped powers, and the odd / even / mixed parity paths."""
    monkeypatch.setattr(_hermite, "POWERS", powers)
    generator = torch.Generator().manual_seed(1)
    rho = torch.rand(5, 7, generator=generator, dtype=torch.float64) * 2 - 1
    for keep in ("odd", "even", "all"):
        a1, a2 = (torch.randn(23, *shape, generator=generator, dtype=torch.float64)
                  for shape in ((5, 1), (1, 7)))
        k = torch.arange(23)
        mask = {"odd": k % 2 == 1, "even": k % 2 == 0, "all": k >= 0}[keep]
        a1[~mask] = 0.0
        direct = sum(a1[j] * a2[j] * rho**j for j in range(23))
        assert torch.allclose(_hermite.mehler_sum(a1, a2, rho), direct, rtol=1e-13, atol=1e-13)


def test_zero_variance_nan_and_float32() -> None:
    zero = torch.zeros((), dtype=torch.float64)
    product, derivative = A.softplus.duals(zero, zero, zero)
    assert float(product) == pytest.approx(math.log(2) ** 2, rel=1e-15)
    assert float(derivative) == pytest.approx(0.25, rel=1e-15)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    assert bool(torch.isnan(A.tanh.dual(nan, torch.tensor(1.0, dtype=torch.float64), zero)))
    q = torch.tensor([0.5, 2.0], dtype=torch.float32)
    c = torch.tensor([[0.5, 0.3], [0.3, 2.0]], dtype=torch.float32)
    single = A.tanh.duals(q[:, None], q[None, :], c)
    double = A.tanh.duals(q[:, None].double(), q[None, :].double(), c.double())
    for s, d in zip(single, double, strict=True):  # computed in float64, rounded once
        assert s.dtype == torch.float32
        assert torch.allclose(s.double(), d, rtol=4 * torch.finfo(torch.float32).eps, atol=0)


def test_a_fast_oscillating_function_is_not_taken_for_converged() -> None:
    """sin(20 z) folds into a smooth polynomial on a 128-node rule (a small upper half of
    coefficients): the rule is accepted only once the next rule agrees, so the generic dual
    matches sin's closed form (it was off by 0.25 at q = 400)."""
    generic = Quadrature(torch.sin, "sin_generic", derivative=torch.cos)
    q = torch.full((1, 9), 400.0, dtype=torch.float64)
    c = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)[None] * 400.0
    for got, exact in zip(generic.duals(q, q, c), A.sin.duals(q, q, c), strict=True):
        torch.testing.assert_close(got, exact, rtol=0, atol=1e-12)


def test_a_function_narrower_than_the_rule_warns() -> None:
    """tanh's derivative at variance 1000 is a spike the largest rule cannot resolve: its
    E[phi'^2] moves by an order of magnitude between the two largest rules, and the user is
    told the kernel may be inaccurate instead of getting it silently."""
    q = torch.tensor([[1000.0]], dtype=torch.float64)
    for _ in range(2):  # every call warns: an unresolved set is never served from the cache
        with pytest.warns(UserWarning, match="not resolved by 1024 nodes"):
            A.tanh.duals(q, q, q)


def test_a_function_vanishing_on_every_node_is_not_taken_for_resolved() -> None:
    """tanh's derivative at variance 1e4 and beyond is a spike of width about 1 / sqrt(q) in z;
    on the 32- and 64-node rules 1 - tanh(s)^2 rounds to 0 at every node, and two zero rules
    agreed, so E[phi'^2] (truly (4/3) / sqrt(2 pi q) = 5.3e-3 at 1e4) came out as exactly 0
    without a warning. Zero energy at a positive variance is no evidence of resolution: the
    rule is doubled, and the user is told (q = 1e8 is 0 even on 1024 nodes)."""
    for variance in (1e4, 1e8):
        q = torch.tensor([[variance]], dtype=torch.float64)
        with pytest.warns(UserWarning, match="not resolved by 1024 nodes"):
            A.tanh.duals(q, q, 0.5 * q)


def test_a_zero_variance_with_phi_0_vanishing_is_resolved_silently() -> None:
    """At q = 0 phi(sqrt(q) z) = phi(0) on every node: a zero there (tanh(0)) is exact, so a
    zero input's kernel neither warns nor runs the rule up to its largest size."""
    q = torch.zeros(1, 1, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        product, derivative = A.tanh.duals(q, q, q)
    assert float(product) == 0.0
    assert abs(float(derivative) - 1.0) <= 4 * np.finfo(float).eps


def test_float32_nearly_identical_points_get_the_float64_dual_rounded_once() -> None:
    """x = (1, 0) and x' = (1, 2^-k): rho = (1 + 2^-2k)^(-1/2) misses 1 by a few float32 ulps.
    Computed in float32 (rounding, and the clamp's inflation of 4 float32 ulps) rho became 1
    and the duals were off by up to 5 float32 eps (relative); computed in float64 from the
    float32 values, they are the float64 duals of those values rounded once (within 1 eps)."""
    offsets = torch.tensor([2.0**-20, 2.0**-21, 2.0**-22], dtype=torch.float32)
    q1 = torch.ones(3, dtype=torch.float32)
    q2 = 1.0 + offsets
    c = torch.ones(3, dtype=torch.float32)
    single = A.tanh.duals(q1, q2, c)
    double = A.tanh.duals(q1.double(), q2.double(), c.double())
    for s, d in zip(single, double, strict=True):
        assert s.dtype == torch.float32
        ulp = torch.finfo(torch.float32).eps * d.abs()
        assert bool(((s.double() - d).abs() <= ulp).all()), ((s.double() - d) / ulp).tolist()


def _panel_moment(f, q: float) -> float:
    """E[f(sqrt(q) z)^2] by adaptive quadrature in z, split at the kink 0 and at +-10 / sqrt(q)
    (independent of the library's Gauss-Legendre panels)."""
    root = math.sqrt(q)

    def integrand(z: float) -> float:
        value = float(f(torch.tensor(root * z, dtype=torch.float64)))
        return value * value * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    points = [p for p in (-10.0 / root, 0.0, 10.0 / root) if -40.0 < p < 40.0]
    return integrate.quad(integrand, -40.0, 40.0, points=points, limit=400, epsabs=0.0,
                          epsrel=1e-12)[0]


@pytest.mark.parametrize("act", [A.tanh, SERIES_GELU, A.softplus], ids=lambda a: a.name)
@pytest.mark.parametrize("q", [25.0, 100.0, 350.0, 1000.0, 1e4])
def test_silent_means_the_moments_are_within_the_threshold(act: A.Quadrature, q: float) -> None:
    """The series' diagonal is the largest rule's E[phi^2] and E[phi'^2]: without a warning both
    are within UNRESOLVED_ERROR = 1e-4 (relative) of adaptive quadrature. The old criterion
    (E[phi^2] moving by 1e-2 between the two largest rules) was silent for gelu's E[phi'^2] at
    q = 1000 (2% off) and softplus's at q = 1e4 (0.7% off)."""
    t = torch.tensor(q, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moments = (act.second_moment(t), act.derivative_second_moment(t))
    warned = any("the Hermite series" in str(w.message) for w in caught)
    errors = [abs(float(m) - _panel_moment(f, q)) / _panel_moment(f, q)
              for m, f in zip(moments, (act.function, act.derivative), strict=True)]
    assert warned or max(errors) <= _hermite_bound.UNRESOLVED_ERROR, errors


def test_ordinary_variances_are_silent() -> None:
    """Variances up to 25 (tanh), 350 (softplus) are resolved to 1e-4: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q1 = torch.tensor([[0.0], [1.0], [25.0]], dtype=torch.float64)
        q2 = torch.tensor([[0.5, 25.0]], dtype=torch.float64)
        A.tanh.duals(q1, q2, torch.zeros(3, 2, dtype=torch.float64))
        A.softplus.duals(350.0, 350.0, 100.0)


def _warned_bounds(caught: list, name: str) -> list[float]:
    """The bounds stated by the Hermite series' warnings about E[f(u) f(v)], f = name."""
    found = []
    for w in caught:
        match = re.search(r"f = (\S+), may be off by up to (\S+) of", str(w.message))
        if match and match.group(1) == name:
            found.append(float(match.group(2)))
    return found


@pytest.mark.parametrize(("q1", "q2"), [(25.0, 25.0), (50.0, 50.0), (100.0, 100.0), (1e3, 1e3),
                                        (1e4, 1e4), (1e8, 1e8), (1.0, 1e4), (1e3, 1e5),
                                        (100.0, 1e8)])
def test_the_warning_bounds_the_error_at_every_correlation(q1: float, q2: float) -> None:
    """erf through the series at variances where erf(sqrt(q) z) is nearly a step, against its
    closed form: the error peaks off the diagonal (1.1e-2 at q = 1e4, rho = 0.999, while the
    diagonal is within 7e-3), and the warning's bound covers it at every rho; without a warning
    the error is within UNRESOLVED_ERROR. The old warning compared only the diagonal E[f^2] and
    stated no bound."""
    rho = torch.cat([torch.linspace(-1, 1, 2001, dtype=torch.float64),
                     1 - torch.logspace(-12, -1, 100, dtype=torch.float64),
                     -1 + torch.logspace(-12, -1, 100, dtype=torch.float64)])
    args = covariance(q1, q2, rho)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = GENERIC_ERF.duals(*args)
    exact = A.erf.duals(*args)
    for which, name in enumerate(("phi", "phi'")):
        scale = math.sqrt(float(A.erf.duals(q1, q1, q1)[which] * A.erf.duals(q2, q2, q2)[which]))
        error = float((series[which] - exact[which]).abs().max()) / scale
        bounds = _warned_bounds(caught, name) or [_hermite_bound.UNRESOLVED_ERROR]
        assert error <= bounds[0] * (1 + 5e-3), (name, error, bounds)  # printed to 3 digits


def test_a_step_like_derivative_with_an_exact_diagonal_warns() -> None:
    """softplus at q = 1e8: phi' = sigmoid(u) is a step to within 1/sqrt(q), which the rule's
    interpolant gets right on the diagonal (E[phi'^2] = 1/2 to 4e-16, so the old diagonal check
    was silent) but 2.5e-3 (5e-3 of E[phi'^2]) wrong near |rho| = 0.999. E[H(u) H(v)] =
    1/4 + arcsin(rho) / (2 pi) for the step H differs from E[phi'(u) phi'(v)] by at most
    2 E|sigmoid(u) - H(u)| <= 4 log(2) / sqrt(2 pi q) = 1.1e-4."""
    q = 1e8
    rho = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derivative = A.softplus.duals(*covariance(q, q, rho))[1]
    step = 0.25 + torch.asin(rho) / (2 * math.pi)
    near = 4 * math.log(2) / math.sqrt(2 * math.pi * q)
    error = float((derivative - step).abs().max())
    assert error > 10 * near  # the series is wrong, not the reference
    bounds = _warned_bounds(caught, "phi'")
    assert bounds
    assert error <= bounds[0] * (1 + 5e-3) * 0.5 + near  # relative to E[H(u)^2] = 1/2 (+- near)


def test_a_converged_series_has_no_defects() -> None:
    """Where every variance converges nothing extra is computed: no defects, no bound."""
    series = _hermite.hermite_series(torch.tanh, torch.tensor([0.3, 2.0], dtype=torch.float64),
                                     1024)
    assert series.defects is None
    assert _hermite_bound.error_bound(series, series) is None


def _panel_edges(s: torch.Tensor) -> torch.Tensor:
    """(P, 2): the ends of the 16-node Gauss-Legendre panels whose nodes are ``s`` (in order)."""
    x = torch.from_numpy(np.polynomial.legendre.leggauss(16)[0])
    panels = s.reshape(-1, 16)
    half = (panels[:, -1] - panels[:, 0]) / (x[-1] - x[0])
    middle = panels.mean(1)
    return torch.stack([middle - half, middle + half], 1)


@pytest.mark.parametrize("qs", [[25.0], [6.6, 26.0, 100.0], [0.0, 0.3, 1.0, 1.05, 1.2, 3.9],
                                [1.0, 1e4], [1e8, 1.5e8], [0.0]])
def test_shared_panels_are_nowhere_coarser_than_each_variance_alone(qs: list[float]) -> None:
    """Every panel of common_panels(qs) is no wider (in z = s / sqrt(q)) than any panel of
    gaussian_panels(q) it overlaps, for each q: the variances sharing it are each resolved as
    finely as alone (the bound's true coefficients were computed on gaussian_panels(q), one
    variance at a time)."""
    z, _ = common_panels(qs)
    assert bool((z > 0).all())
    shared = _panel_edges(z)
    for q in qs:
        if q == 0.0:  # f(0 z) is constant: panels at most 1/4 wide resolve h_k
            assert float((shared[:, 1] - shared[:, 0]).max()) <= 0.25 * (1 + 1e-12)
            continue
        s, _ = gaussian_panels(q)
        own = _panel_edges(s / math.sqrt(q))
        own = own[own[:, 1] > 0]
        for lo, hi in shared.tolist():
            overlapped = own[(own[:, 0] < hi) & (own[:, 1] > lo)]
            narrowest = float((overlapped[:, 1] - overlapped[:, 0]).min())
            assert hi - lo <= narrowest * (1 + 1e-9), (q, lo, hi, narrowest)


def _alone(f, q: float, count: int) -> tuple[torch.Tensor, float]:
    """t_k, k < count, and E[f^2] on gaussian_panels(q) alone (nodes of weight > 1e-40), by the
    recurrence of the orthonormal Hermite polynomials: how the bound computed them before."""
    s, w = gaussian_panels(q)
    keep = w > 1e-40
    s, w = s[keep], w[keep]
    z, root = s / math.sqrt(q), torch.sqrt(w)
    weighted = root * f(s).to(torch.float64)
    true = torch.empty(count, dtype=torch.float64)
    previous, current = torch.zeros_like(z), root
    for k in range(count):
        true[k] = weighted @ current
        previous, current = current, (z * current - math.sqrt(k) * previous) / math.sqrt(k + 1)
    return true, float(weighted @ weighted)


@pytest.mark.parametrize("f", [torch.tanh, A.tanh.derivative, torch.relu, torch.erf],
                         ids=["tanh", "tanh'", "relu", "erf"])
def test_shared_panels_give_each_variance_its_own_coefficients(f) -> None:
    """The true coefficients and E[f^2] of many variances at once (shared panels, the symmetry
    h_k(-z) = (-1)^k h_k(z), matrix products) are each variance's own on gaussian_panels(q) to
    round-off: a sum over 10^4 nodes of terms whose absolute sum is at most sqrt(E[f^2])
    (Cauchy-Schwarz), 1e-14 of it. (softplus is left out: torch's jumps by 2e-9 at s = 20,
    which neither set of panels resolves to round-off.)"""
    qs = [0.3, 1.05, 6.6, 25.0, 90.0, 341.0, 1e4, 1e8]
    panels = _hermite_bound._Panels(f, torch.tensor(qs, dtype=torch.float64))
    true, energy = panels.coefficients(1024), panels.energy()
    for i, q in enumerate(qs):
        alone, moment = _alone(f, q, 1024)
        assert float((true[i] - alone).abs().max()) <= 1e-14 * math.sqrt(moment), q
        assert abs(float(energy[i]) - moment) <= 1e-14 * moment, q


def test_the_bound_samples_f_once_for_all_unresolved_variances() -> None:
    """The true coefficients of all the unresolved variances of a call come from one batched
    evaluation: f is called a few times (once per rule size, twice per band of panels), not
    once or more per variance (20 ms each, 3.8 s for a tanh MLP at weight_std = 5 whose series
    had 0.66 s)."""
    calls = []

    def counted(s: torch.Tensor) -> torch.Tensor:
        calls.append(s.shape)
        return torch.tanh(s)

    q = torch.linspace(20.0, 300.0, 60, dtype=torch.float64)
    series = _hermite.hermite_series(counted, q, 1024)
    assert series.defects is not None  # all 60 unresolved: the bound was computed
    assert len(calls) <= len(_hermite._rule_sizes(1024)) + 2


def test_overlapping_sets_of_variances_compute_each_bound_once(monkeypatch) -> None:
    """The blocks of pairs of one kernel pass overlapping sets of variances (each block its
    rows' and columns'): each variance's bound terms are computed once and reused."""
    built = []

    class Counted(_hermite_bound._Panels):
        def __init__(self, f, q):
            built.append(q.numel())
            super().__init__(f, q)

    monkeypatch.setattr(_hermite_bound, "_Panels", Counted)
    f = A.Quadrature(torch.tanh, "tanh").function  # a new f: nothing of it is cached
    q = torch.linspace(30.0, 300.0, 60, dtype=torch.float64)
    first = _hermite.hermite_series(f, q[:40], 1024)
    second = _hermite.hermite_series(f, q[20:], 1024)
    assert built == [40, 20]
    for name in ("true_norm", "defect", "tail", "energy"):
        assert torch.equal(getattr(first.defects, name)[..., 20:],
                           getattr(second.defects, name)[..., :20])
