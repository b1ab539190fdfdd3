"""Tests of the ntk-concentration study: end to end, its measurements against brute force and
closed forms, its analysis on synthetic errors with known answers, and its config errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, jacrev

from tests.conftest import FULL, sphere_points
from tests.studies.conftest import run_in_memory
from widenet.checks import VERDICTS
from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.ntk_concentration import analysis as nc_analysis
from widenet.studies.ntk_concentration import config as nc_config
from widenet.studies.ntk_concentration import measure as nc_measure

STUDY = get_study("ntk-concentration")
TINY = {"points": 5, "dim": 3, "seeds": 2, "depths": [2], "widths": [8, 16, 32],
        "base_widths": [2, 4, 8], "probe_width": 4, "probe_depth": 2, "depth_sweep": [1, 2, 3],
        "outputs_sweep": [1, 4, 8], "points_sweep": [3, 4, 6],
        "family": ["abs", "relu", "leaky_relu:0.5"], "probe_seeds": 2}
NO_PROBES = {"depth_sweep": [], "outputs_sweep": [], "points_sweep": [], "family": []}


def test_quick_preset_end_to_end(tmp_path: Path) -> None:
    _, analysis = run_in_memory(STUDY, tmp_path, **TINY)
    assert set(analysis.tables) == {"slopes", "abs_vs_relu", "equal_params", "sweep_fits",
                                    "family"}
    assert set(analysis.figures) == {"error_vs_width", "abs_vs_relu", "error_vs_params",
                                     "structure"}
    slopes = analysis.tables["slopes"]
    assert {"activation", "pattern", "depth", "slope", "slope_stderr"} <= set(slopes.columns)
    assert len(slopes) == 2 * 2  # activations x patterns
    assert {"pattern", "depth", "mean_log_ratio", "stderr", "pairs"} <= set(
        analysis.tables["abs_vs_relu"].columns)
    assert {"activation", "depth", "params", "error_constant", "error_quadratic", "log_ratio",
            "stderr"} <= set(analysis.tables["equal_params"].columns)
    fits = analysis.tables["sweep_fits"]
    assert len(fits) == 2 * 2 + 2 + 2  # depth: activations x patterns; outputs, points
    assert len(analysis.tables["family"]) == 3
    names = [check.name for check in analysis.checks]
    # slopes, abs vs relu, depth (2 per activation), outputs, points, family ordering
    assert len(names) == 4 + 2 + 2 * 2 + 2 + 2 + 1
    assert len(set(names)) == len(names)
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    assert all(np.isfinite(check.measured) and check.stderr > 0 for check in analysis.checks)


def test_task_tables_are_tidy_and_reproducible(tmp_path: Path) -> None:
    config = validate_config(nc_config.ConcentrationConfig,
                             {**TINY, **NO_PROBES, "outputs": 2, "depths": [1, 2]})
    tasks = nc_measure.plan(config)
    assert [task.key for task in tasks][:4] == ["constant/L=1/m=8", "constant/L=1/m=16",
                                               "constant/L=1/m=32", "constant/L=2/m=8"]
    assert len(tasks) == 2 * 2 * 3
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, again = tasks[3].compute(context)["errors"], tasks[3].compute(context)["errors"]
    pd.testing.assert_frame_equal(first, again)
    assert set(first.columns) == {"activation", "pattern", "depth", "m", "seed", "params",
                                  "delta", "kappa", "error", "limit_norm", "relative_error"}
    assert len(first) == config.seeds * 2
    assert (first["pattern"] == "constant").all()
    assert (first["depth"] == 2).all()


def test_only_the_planned_comparisons_are_made(tmp_path: Path) -> None:
    _, analysis = run_in_memory(STUDY, tmp_path, **{**TINY, **NO_PROBES, "seeds": 1},
                                activations=["abs"], patterns=["constant"])
    assert set(analysis.tables) == {"slopes"}
    assert set(analysis.figures) == {"error_vs_width"}
    assert all(check.name.startswith("slope") for check in analysis.checks)


# --- the measurement against independent computations -------------------------------------

def brute_force_matrix(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """K[(i, a), (j, b)] = (1/n) sum_p J[i, a, p] J[j, b, p] from the full Jacobian."""
    params = {name: p.detach() for name, p in net.named_parameters()}
    jac = jacrev(lambda p: functional_call(net, p, (x,)))(params)
    n, k = x.shape[0], net.out_features
    flat = torch.cat([j.reshape(n, k, -1) for j in jac.values()], dim=2).reshape(n * k, -1)
    return flat @ flat.T / n


def closed_form_ntk(x: torch.Tensor, a: float, b: float, depth: int) -> torch.Tensor:
    """Theta^{L+1} of docs/theory.md section 3 for phi = a s + b|s| with a^2 + b^2 = 1, sigma_w = 1,
    no biases, written out with the section-2 Gaussian expectations."""
    sigma = x @ x.T / x.shape[1]
    theta = sigma
    for _ in range(depth):
        q = torch.diagonal(sigma)
        scale = torch.sqrt(q[:, None] * q[None, :])
        rho = (sigma / scale).clamp(-1.0, 1.0)
        j_rho = (2 / math.pi) * (torch.sqrt(1 - rho**2) + rho * torch.asin(rho))
        sigma_dot = a**2 + b**2 * (2 / math.pi) * torch.asin(rho)
        sigma = a**2 * sigma + b**2 * scale * j_rho
        theta = sigma + sigma_dot * theta
    return theta


@pytest.mark.parametrize(("name", "pattern", "outputs"),
                         [("abs", "constant", 1), ("relu", "quadratic", 3),
                          ("leaky_relu:0.2", "constant", 2)])
def test_error_matches_brute_force(name: str, pattern: str, outputs: int) -> None:
    x = sphere_points(6, 4, seed=1)
    act = nc_config.normalized_activation(name)
    depth = 2
    net = MLP(4, nc_measure.hidden_widths(pattern, 5, depth), outputs, act, seed=3,
              dtype=torch.float64)
    assert net.weight_std == pytest.approx(1.0)  # a^2 + b^2 = 1: the EOC is sigma_w = 1
    brute = brute_force_matrix(net, x)
    torch.testing.assert_close(nc_measure.ntk_matrix(net, x), brute, rtol=1e-10, atol=1e-12)
    theta = closed_form_ntk(x, act.a, act.b, depth)
    limit = torch.kron(theta, torch.eye(outputs, dtype=theta.dtype)) / 6
    torch.testing.assert_close(nc_measure.limit_matrix(net, x), limit, rtol=1e-10, atol=1e-12)
    # docs/theory.md section 4: with ||x||^2 = d at the EOC, diag Theta = L + 1 exactly.
    torch.testing.assert_close(torch.diagonal(limit), torch.full((6 * outputs,), 3 / 6,
                                                                  dtype=torch.float64))
    error = nc_measure.operator_error(net, x, nc_measure.limit_matrix(net, x))
    assert error == pytest.approx(np.linalg.norm((brute - limit).numpy(), 2), rel=1e-10)


def test_normalized_activations() -> None:
    relu, absolute = nc_config.normalized_activation("relu"), nc_config.normalized_activation("abs")
    assert (relu.a, relu.b) == pytest.approx((2**-0.5, 2**-0.5))
    assert (relu.delta, relu.kappa) == pytest.approx((0.5, 2**0.5))
    assert (absolute.a, absolute.b, absolute.delta, absolute.kappa) == (0.0, 1.0, 1.0, 1.0)
    s = torch.linspace(-2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(relu(s), torch.relu(s) * 2**0.5)


def test_width_patterns_and_parameter_counts() -> None:
    assert nc_measure.hidden_widths("constant", 7, 3) == [7, 7, 7]
    assert nc_measure.hidden_widths("quadratic", 7, 3) == [7, 28, 63]
    net = MLP(4, nc_measure.hidden_widths("quadratic", 2, 2), 3, "abs")
    assert sum(p.numel() for p in net.parameters()) == 4 * 2 + 2 * 8 + 8 * 3


def test_seeds_depend_on_the_task_not_on_the_plan() -> None:
    config = validate_config(nc_config.ConcentrationConfig, TINY)
    other = validate_config(nc_config.ConcentrationConfig, {**TINY, "widths": [8, 16, 32, 64]})
    seeds = {nc_measure.task_seed(config, key, r)
             for key in ("constant/L=1/m=8", "constant/L=2/m=8") for r in range(3)}
    assert len(seeds) == 6
    assert nc_measure.task_seed(config, "constant/L=1/m=8", 1) == nc_measure.task_seed(
        other, "constant/L=1/m=8", 1)
    moved = validate_config(nc_config.ConcentrationConfig, {**TINY, "seed": 1})
    assert nc_measure.task_seed(moved, "constant/L=1/m=8", 1) != nc_measure.task_seed(
        config, "constant/L=1/m=8", 1)


# --- the analysis on synthetic errors with known answers -----------------------------------

def synthetic_errors(slope: float, noise: float = 0.0, seeds: int = 4) -> pd.DataFrame:
    """error = c m^slope (times lognormal noise), abs 0.8 x relu on the same draws, and
    params = 3 m^2 (constant) or 20 m^2 (quadratic)."""
    rng = np.random.default_rng(0)
    rows = []
    for pattern, factor in (("constant", 3), ("quadratic", 20)):
        for m in (8, 16, 32, 64, 128):
            for seed in range(seeds):
                shared = noise * rng.standard_normal()
                for act, c in (("abs", 0.8), ("relu", 1.0)):
                    error = c * m**slope * math.exp(shared)
                    rows.append({"activation": act, "pattern": pattern, "depth": 2, "m": m,
                                 "seed": seed, "params": factor * m * m, "error": error,
                                 "relative_error": error / 2.0})
    return pd.DataFrame(rows)


def test_slope_fit_and_checks_on_exact_power_laws() -> None:
    slopes = nc_analysis.slope_table(synthetic_errors(-0.5))
    assert np.allclose(slopes["slope"], -0.5)
    assert np.allclose(slopes["slope_stderr"], 0.0)
    assert all(check.verdict == "pass" for check in nc_analysis.slope_checks(slopes))
    wrong = nc_analysis.slope_table(synthetic_errors(-1.0, noise=0.1))
    assert all(check.verdict == "fail" for check in nc_analysis.slope_checks(wrong))


def test_paired_ratios() -> None:
    errors = synthetic_errors(-0.5, noise=0.3)
    ratios = nc_analysis.log_ratio_table(errors, "abs", "relu")
    assert len(ratios) == 2 * 5 * 4
    assert np.allclose(ratios["log_ratio"], math.log(0.8))  # the shared noise cancels
    summary = nc_analysis.ratio_summary(ratios)
    assert np.allclose(summary["mean_log_ratio"], math.log(0.8))
    assert all(check.verdict == "pass" for check in nc_analysis.activation_checks(summary))
    reverse = nc_analysis.ratio_summary(nc_analysis.log_ratio_table(errors, "relu", "abs"))
    assert all(check.verdict == "fail" for check in nc_analysis.activation_checks(reverse))


def test_equal_parameter_comparison_of_exact_power_laws() -> None:
    # error = c m^-1/2 = c (P / factor)^-1/4: at equal P the quadratic/constant ratio is
    # (20 / 3)^(1/4), whatever P0 is.
    equal = nc_analysis.equal_params_table(synthetic_errors(-0.5), 8, 1)
    assert len(equal) == 2
    assert equal["overlap"].all()
    assert np.allclose(equal["log_ratio"], 0.25 * math.log(20 / 3))
    assert np.allclose(equal["stderr"], 0.0, atol=1e-12)
    assert np.allclose(equal["slope_constant"], -0.25)
    assert np.allclose(equal["params"], math.sqrt(20 * 64 * 3 * 128**2))


# --- config errors ------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"width": [8, 16, 32]}, "unknown config key 'width'"),
    ({"widths": [0, 16, 32]}, "'widths'"),
    ({"widths": [8, 16]}, "at least 3 distinct widths"),
    ({"base_widths": [8, 8, 16]}, "'base_widths'"),
    ({"activations": ["tanh"]}, "not of the form a s + b|s|"),
    ({"activations": ["swish"]}, "unknown activation"),
    ({"activations": []}, "must not be empty"),
    ({"patterns": ["cubic"]}, "'patterns'"),
    ({"depths": [2, 2]}, "repeated values"),
    ({"seeds": 0}, "'seeds'"),
    ({"seed": -1}, "'seed'"),
    ({"seed": 2**63}, "'seed'"),
    ({"outputs": "two"}, "'outputs'"),
    ({"outputs_sweep": [1, 2]}, "at least 3 distinct values"),
    ({"family": ["abs", "relu"]}, "at least 3 activations"),
    ({"family": ["abs", "relu", "identity"]}, "Delta = 0"),
    ({"family": ["abs", "relu", "leaky_relu:-1"]}, "'leaky_relu:-1' and 'abs' are the same"),
    ({"activations": ["relu", "relu"]}, "repeated activations"),
    ({"probe_seeds": 1}, "at least 2 networks"),
])
def test_config_errors(values: dict, message: str) -> None:
    with pytest.raises(WidenetError, match="config key") as error:
        validate_config(nc_config.ConcentrationConfig, values)
    assert message in str(error.value)


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path: Path) -> None:
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the real quick preset")
    _, analysis = run_in_memory(STUDY, tmp_path)
    failing = [(c.name, c.measured, c.stderr, c.verdict) for c in analysis.checks
               if c.verdict != "pass"]
    assert not failing
