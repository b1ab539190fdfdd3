"""Tests of the ntk-concentration study's structure checks on synthetic sweeps with known
laws: each check passes on the law it claims and fails on a wrong one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from widenet.studies.ntk_concentration import structure
from widenet.studies.ntk_concentration.config import normalized_activation

SEEDS = 6


def synthetic_probes(*, depth_slopes: tuple[float, float] = (0.8, 1.2),
                     k_law=lambda k: 0.2 + math.sqrt(k), n_slope: float = 0.0,
                     family_power: float = 0.3, noise: float = 0.05) -> pd.DataFrame:
    """A ``probes`` table: error = L^slope (constant, quadratic), error = k_law(k),
    error = n^n_slope, error = C^family_power across the family, each times lognormal noise."""
    rng = np.random.default_rng(1)
    rows = []

    def add(sweep, pattern, act, depth, outputs, points, seed, error):
        a = normalized_activation(act)
        rows.append({"sweep": sweep, "activation": act, "pattern": pattern, "depth": depth,
                     "m": 32, "outputs": outputs, "points": points, "seed": seed,
                     "delta": a.delta, "kappa": a.kappa,
                     "error": error * math.exp(noise * rng.standard_normal())})

    for seed in range(SEEDS):
        for depth in (1, 2, 3, 4, 6):
            for pattern, slope in zip(("quadratic", "constant"), depth_slopes, strict=True):
                add("depth", pattern, "abs", depth, 1, 16, seed, depth**slope)
        for k in (1, 2, 4, 8, 16, 32):
            add("outputs", "quadratic", "abs", 3, k, 16, seed, k_law(k))
        for n in (8, 16, 32, 64):
            add("points", "quadratic", "abs", 3, 1, n, seed, n**n_slope)
        for act in ("abs", "relu", "leaky_relu:0.2", "leaky_relu:0.5"):
            a = normalized_activation(act)
            add("family", "quadratic", act, 3, 1, 16, seed,
                structure.bound_constant(a.delta, a.kappa, 1, 3) ** family_power)
    return pd.DataFrame(rows)


def verdicts(probes: pd.DataFrame) -> dict[str, str]:
    return {check.name: check.verdict for check in structure.structure_checks(probes)[1]}


def test_bound_constant() -> None:
    # abs: (1 + L) kappa^2 = 4 at L = 3; relu: (4 + 3) * 2 = 14; sqrt(k) multiplies L only
    assert structure.bound_constant(1.0, 1.0, 1, 3) == pytest.approx(4.0)
    assert structure.bound_constant(0.5, math.sqrt(2), 1, 3) == pytest.approx(14.0)
    assert structure.bound_constant(1.0, 1.0, 4, 3) == pytest.approx(7.0)


def test_laws_that_hold_pass() -> None:
    probes = synthetic_probes()
    assert verdicts(probes) == {
        "depth abs/quadratic": "pass", "depth abs: constant steeper": "pass",
        "outputs abs": "pass", "points abs": "pass", "family ordering": "pass"}
    fits = structure.sweep_fits(probes)
    outputs = fits[fits["sweep"] == "outputs"].iloc[0]
    # 0.2 + sqrt(k) on k = 4..32: local slope (1/2) sqrt(k) / (0.2 + sqrt(k)), 0.45 to 0.48;
    # over every k (from 0.42 at k = 1) the slope is flatter
    assert (outputs["x_min"], outputs["x_max"]) == (4, 32)
    assert 0.44 < outputs["slope"] < 0.49
    assert outputs["slope_all"] < outputs["slope"]


def test_wrong_laws_fail() -> None:
    probes = synthetic_probes(depth_slopes=(1.5, 1.0), k_law=lambda k: k, n_slope=-0.5,
                              family_power=-0.3)
    assert verdicts(probes) == {
        "depth abs/quadratic": "fail", "depth abs: constant steeper": "fail",
        "outputs abs": "fail", "points abs": "fail", "family ordering": "fail"}


def test_indistinguishable_effects_are_inconclusive() -> None:
    probes = synthetic_probes(depth_slopes=(1.0, 1.0), family_power=0.0, noise=0.3)
    result = verdicts(probes)
    assert result["depth abs: constant steeper"] == "inconclusive"
    assert result["family ordering"] == "inconclusive"


def test_family_slopes_are_per_network() -> None:
    probes = synthetic_probes(family_power=0.5, noise=0.0)
    assert np.allclose(structure.family_slopes(probes), 0.5)
    table = structure.family_table(probes)
    assert list(table["activation"]) == ["abs", "relu", "leaky_relu:0.2", "leaky_relu:0.5"]
    assert np.allclose(np.exp(table["mean_log_error"]), table["bound_constant"] ** 0.5)


def test_heuristic_equal_parameter_ratio() -> None:
    # one hidden layer: both patterns are the same net
    assert structure.heuristic_log_ratio(1, 1e4, 8, 1) == pytest.approx(0.0, abs=1e-12)
    # L = 2, d = 8, k = 1, P = 1e4: constant m solves 8m + m^2 + m = P, quadratic
    # (m, 4m) solves 8m + 4m^2 + 4m = P; S = 2/m and 1.25/m
    m_c = (-9 + math.sqrt(81 + 4e4)) / 2
    m_q = (-12 + math.sqrt(144 + 16e4)) / 8
    expected = 0.5 * math.log((1.25 / m_q) / (2 / m_c))
    assert structure.heuristic_log_ratio(2, 1e4, 8, 1) == pytest.approx(expected, rel=1e-12)
    assert structure.heuristic_log_ratio(4, 1e4, 8, 1) > expected  # grows with depth


def test_equal_parameter_trend_check() -> None:
    equal = pd.DataFrame([
        {"activation": "abs", "depth": 2, "log_ratio": 0.10, "stderr": 0.04,
         "log_ratio_heuristic": 0.10},
        {"activation": "abs", "depth": 4, "log_ratio": 0.48, "stderr": 0.05,
         "log_ratio_heuristic": 0.51}])
    (check,) = structure.equal_params_trend_checks(equal)
    assert check.verdict == "pass"
    assert check.measured == pytest.approx(0.38)
    assert check.predicted == pytest.approx(0.41)
    reverse = equal.assign(log_ratio=[0.48, 0.10])
    assert structure.equal_params_trend_checks(reverse)[0].verdict == "fail"
    assert structure.equal_params_trend_checks(equal.iloc[:1]) == []  # one depth: no trend
