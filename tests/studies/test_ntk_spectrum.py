"""The ntk-spectrum study: end to end, its measurements against independent computations, and
its config errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FULL, sphere_points
from tests.studies.conftest import run_in_memory
from widenet.checks import VERDICTS
from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.ntk_spectrum import STUDY
from widenet.studies.ntk_spectrum.analysis import (
    angle_fit_table,
    equicorrelated_condition,
    limit_checks,
    summary_table,
)
from widenet.studies.ntk_spectrum.config import SpectrumConfig
from widenet.studies.ntk_spectrum.measure import (
    inverse_angle_errors,
    kernel_row,
    layer_angles,
    limit_net,
    normalized_ab,
    pair_angles,
)

TINY = {"points": 10, "dim": 6, "deltas": [0.5, 1.0], "depths": [1, 4, 20, 40], "seeds": 2,
        "angle_points": 4, "compare_depth": 4}


def varrho(rho: float, delta: float) -> float:
    """The EOC correlation map (docs/theory.md section 2): (1 - Delta) rho + Delta J(rho)."""
    j = (2 / math.pi) * (math.sqrt(max(0.0, 1 - rho * rho)) + rho * math.asin(rho))
    return (1 - delta) * rho + delta * j


def scalar_ntk(rho0: float, delta: float, depth: int) -> tuple[float, float]:
    """(Theta^{L+1}, rho_L) of two unit-variance inputs with correlation rho0, by the scalar
    recursion Theta <- varrho(rho) + (1 - (2 Delta / pi) arccos rho) Theta (sections 2-3)."""
    rho, theta = rho0, rho0
    for _ in range(depth):
        theta = varrho(rho, delta) + (1 - (2 * delta / math.pi) * math.acos(rho)) * theta
        rho = varrho(rho, delta)
    return theta, rho


def test_tiny_run_end_to_end(tmp_path):
    config, analysis = run_in_memory(STUDY, tmp_path, quick=True, **TINY)
    assert get_study("ntk-spectrum") is STUDY
    summary = analysis.tables["summary"]
    assert {"delta", "depth", "cond", "cond_stderr", "offdiag_mean", "lambda_min_scaled",
            "lambda_max_scaled", "inverse_angle_error", "cond_excess"} <= set(summary.columns)
    assert len(summary) == len(config.deltas) * len(config.depths)
    assert {"delta", "rate", "rate_stderr", "log_coefficient", "plain_l0", "product"} <= set(
        analysis.tables["angle_fits"].columns)
    assert "reference" not in analysis.tables  # only for n = 100 with depths 9, 99, 999
    assert len(analysis.tables["log_law"]) == len(config.deltas)
    assert set(analysis.figures) == {"condition", "eigenvalues", "angles", "inverse_angle"}
    names = [check.name for check in analysis.checks]
    assert names[0] == "diagonal"
    for delta in ("0.5", "1"):
        for kind in ("offdiag law", "cond", "angle law", "inverse angle"):
            assert f"{kind}/Delta={delta}" in names
    assert "faster for larger Delta" in names
    assert all(check.verdict in VERDICTS for check in analysis.checks)


def test_tasks_are_deterministic_and_keyed(tmp_path):
    config = validate_config(SpectrumConfig, TINY)
    tasks = STUDY.plan(config)
    keys = [task.key for task in tasks]
    assert "spectrum/Delta=0.5/L=20" in keys
    assert "angles/Delta=1" in keys
    assert len(keys) == len(set(keys)) == 2 * 4 + 2
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, again = tasks[2].compute(context), tasks[2].compute(context)
    pd.testing.assert_frame_equal(first["kernels"], again["kernels"])
    assert {"delta", "depth", "seed"} <= set(first["kernels"].columns)


def test_kernel_row_against_scalar_recursion():
    """Theta and the last-layer angle of every pair from the library kernels equal the scalar
    recursion on that pair's input correlation; the diagonal is L + 1."""
    x = sphere_points(6, 5, seed=3)
    delta, depth = 0.75, 30
    kernels = infinite_kernels(limit_net(delta, depth, 5), x)
    row = kernel_row(kernels.ntk, kernels.nngp, x, delta, depth)
    gram = (x @ x.T / 5).numpy()
    i, j = np.triu_indices(6, 1)
    expected = [scalar_ntk(gram[a, b], delta, depth) for a, b in zip(i, j, strict=True)]
    theta = np.array([e[0] for e in expected])
    np.testing.assert_allclose(kernels.ntk.numpy()[i, j], theta, rtol=1e-12)
    angles = np.arccos([e[1] for e in expected])
    np.testing.assert_allclose(pair_angles(kernels.nngp).numpy(), angles, rtol=1e-9)
    assert row["offdiag_mean"] == pytest.approx(theta.mean() / (depth + 1), rel=1e-12)
    assert row["diagonal_error"] <= 8 * (depth + 1) ** 2 * np.finfo(float).eps
    eigen = np.linalg.eigvalsh(kernels.ntk.numpy() / 6)
    assert row["cond"] == pytest.approx(eigen[-1] / eigen[0], rel=1e-10)


def test_inverse_angle_errors_against_least_squares():
    gen = torch.Generator().manual_seed(0)
    angles = torch.rand(20, generator=gen, dtype=torch.float64) + 0.1
    theta = 2.0 / angles + 0.01 * torch.randn(20, generator=gen, dtype=torch.float64)
    ratio, error_fit, error_theory = inverse_angle_errors(theta, angles, delta=0.5)
    design = (1 / angles).numpy()[:, None]
    c_fit = np.linalg.lstsq(design, theta.numpy(), rcond=None)[0][0]
    c_theory = 3 * math.pi / 4
    assert ratio == pytest.approx(c_fit / c_theory, rel=1e-12)
    norm = np.linalg.norm(theta.numpy())
    assert error_fit == pytest.approx(np.linalg.norm(theta.numpy() - c_fit * design[:, 0])
                                      / norm, rel=1e-10)
    assert error_theory == pytest.approx(np.linalg.norm(theta.numpy() - c_theory * design[:, 0])
                                         / norm, rel=1e-10)
    assert error_fit < error_theory


def test_inverse_angle_errors_of_a_zero_kernel_are_nan():
    angles = torch.tensor([0.5, 1.0], dtype=torch.float64)
    ratio, error_fit, error_theory = inverse_angle_errors(torch.zeros(2, dtype=torch.float64),
                                                          angles, delta=0.5)
    assert ratio == 0.0
    assert math.isnan(error_fit)
    assert math.isnan(error_theory)


def test_layer_angles_follow_the_correlation_map():
    x = sphere_points(3, 4, seed=1)
    delta, depth = 0.25, 12
    mean, inverse = layer_angles(limit_net(delta, depth, 4), x)
    gram = (x @ x.T / 4).numpy()
    trajectories = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        rho, angles = gram[a, b], []
        for _ in range(depth + 1):
            angles.append(math.acos(rho))
            rho = varrho(rho, delta)
        trajectories.append(angles)
    expected = np.array(trajectories)
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-8)
    np.testing.assert_allclose(inverse, (1 / expected).mean(axis=0), rtol=1e-8)


@pytest.mark.parametrize("delta", [0.25, 1.0])
def test_angle_law_limit_of_the_scalar_map(delta):
    """theta_l l 2 Delta / (3 pi) -> 1 with deficit (3/2 ln l + c) / l: check it on the scalar
    map at l = 4000 and 8000 (c must come out the same at both)."""
    rho, k, offsets = 0.0, 2 * delta / (3 * math.pi), []
    for layer in range(1, 8001):
        rho = varrho(rho, delta)
        if layer in (4000, 8000):
            theta = math.acos(rho)
            assert 0.97 < theta * layer * k < 1.0
            offsets.append(1 / (k * theta) - layer - 1.5 * math.log(layer))
    assert offsets[0] == pytest.approx(offsets[1], abs=0.05)


def test_angle_fit_recovers_an_exact_law():
    layer = np.arange(0, 301)
    frames = []
    for delta, offset in ((0.5, 4.0), (1.0, 2.5)):
        k = 2 * delta / (3 * math.pi)
        with np.errstate(divide="ignore"):
            u = k * (layer + 1.5 * np.log(layer) + offset)
        for seed in (0, 1):
            frames.append(pd.DataFrame({"delta": delta, "seed": seed, "layer": layer,
                                        "angle_mean": 1 / u, "inverse_angle_mean": u}))
    fits = angle_fit_table(pd.concat(frames, ignore_index=True), start=30).set_index("delta")
    np.testing.assert_allclose(fits["rate"], 1.0, rtol=1e-10)
    np.testing.assert_allclose(fits["log_coefficient"], 1.5, rtol=1e-9)
    np.testing.assert_allclose(fits["offset"], [4.0, 2.5], rtol=1e-9)
    assert fits.loc[0.5, "product"] == pytest.approx(300 / (300 + 1.5 * math.log(300) + 4))


def test_equicorrelated_condition_is_exact():
    for n, m in ((5, 0.25), (100, 0.25), (7, 0.6)):
        matrix = (1 - m) * np.eye(n) + m * np.ones((n, n))
        eigen = np.linalg.eigvalsh(matrix)
        assert equicorrelated_condition(n, m) == pytest.approx(eigen[-1] / eigen[0], rel=1e-12)
    assert equicorrelated_condition(100, 0.25) == pytest.approx(1 + 100 / 3)


def synthetic_kernels(law, cond: float = 35.0, depths=(99, 199, 499, 999)) -> pd.DataFrame:
    """A kernels table of two draws per depth whose off-diagonal mean follows
    4 (L + 1) (Theta_ij / (L + 1) - 1/4) = law(L), the draws 1e-7 apart."""
    rows = [{"delta": 0.25, "depth": depth, "seed": seed, "points": 100, "cond": cond + seed / 10,
             "offdiag_mean": 0.25 + law(depth) / (4 * (depth + 1)) + 1e-7 * seed,
             "lambda_min": 1.0, "lambda_max": 60.0, "inverse_angle_error": 1e-6,
             "inverse_angle_error_theory": 1e-3, "inverse_angle_c_ratio": 1.0}
            for depth in depths for seed in (0, 1)]
    return pd.DataFrame(rows)


def test_limit_checks_test_the_ln_l_law_not_a_fixed_multiple():
    """Delta = 1/4's case: a large offset c makes the excess at L = 999 1.8 x the leading
    (3/8) ln L / L, which the old check (<= 1.5 x) failed although the two-term law holds."""
    def two_term(depth: int) -> float:
        return 1.5 * math.log(depth) + 8.9 - 20 * math.log(depth) / depth

    checks = {check.name: check for check in limit_checks(summary_table(
        synthetic_kernels(two_term)))}
    law = checks["offdiag law/Delta=0.25"]
    excess = two_term(999) / (4 * 1000)
    assert excess > 1.5 * 0.375 * math.log(999) / 999  # the old check's bound: it failed
    assert law.measured == pytest.approx(1.5, abs=1e-3)  # the draws differ by 1e-7
    assert law.verdict == "pass"
    assert checks["cond/Delta=0.25"].verdict == "pass"
    # the same excess at L = 999 under a 1/L law (no ln L), and a wrong coefficient, both fail
    assert limit_checks(summary_table(synthetic_kernels(
        lambda depth: 15.0 + 100 / depth)))[0].verdict == "fail"
    assert limit_checks(summary_table(synthetic_kernels(
        lambda depth: 1.0 * math.log(depth) + 12.0)))[0].verdict == "fail"


def test_limit_checks_fail_when_the_limit_is_wrong():
    checks = limit_checks(summary_table(synthetic_kernels(lambda depth: 0.2 * (depth + 1),
                                                          cond=30.0)))
    assert [check.verdict for check in checks] == ["fail", "fail"]


def test_activation_and_cheap_deep_net():
    for delta in (0.25, 0.5, 0.75, 1.0):
        act = normalized_ab(delta)
        assert act.delta == pytest.approx(delta)
        assert act.a**2 + act.b**2 == pytest.approx(1.0)
    net = limit_net(0.5, 1000, 100)  # cheap: width 1, whatever the depth (counted below)
    assert net.weight_std == pytest.approx(1.0)
    assert net.bias_std == 0.0
    assert sum(p.numel() for p in net.parameters()) == 100 + 999 + 1


@pytest.mark.parametrize(("values", "key"), [
    ({"widths": [4]}, "widths"),
    ({"deltas": [0.0, 0.5]}, "deltas"),
    ({"deltas": [1.5]}, "deltas"),
    ({"deltas": []}, "deltas"),
    ({"depths": [1, 2, 3]}, "depths"),
    ({"depths": [1, 2, 100]}, "depths"),
    ({"depths": [0, 50, 100]}, "depths"),
    ({"compare_depth": 7}, "compare_depth"),
    ({"angle_points": 200}, "angle_points"),
    ({"points": 0}, "points"),
    ({"points": 2, "angle_points": 2}, "points"),
    ({"dim": 1}, "dim"),
])
def test_config_errors(values, key):
    with pytest.raises(WidenetError, match=key):
        validate_config(SpectrumConfig, values)


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("runs the quick preset; set WIDENET_FULL_TESTS=1")
    _, analysis = run_in_memory(STUDY, tmp_path, quick=True)
    failed = [(check.name, check.verdict, check.measured) for check in analysis.checks
              if check.verdict != "pass"]
    assert not failed
