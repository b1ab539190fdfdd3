"""Tests of the gd-convergence study: end to end, its physics against exact identities, config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FULL, brute_force_ntk, sphere_points
from tests.studies.conftest import run_in_memory
from widenet import MLP, empirical_ntk, infinite_kernels, linearize, train
from widenet.checks import VERDICTS
from widenet.diagnostics.movement import parameter_snapshot, weight_movement
from widenet.dynamics.losses import mse
from widenet.dynamics.monitor import RunState
from widenet.dynamics.predict import KernelDynamics
from widenet.errors import WidenetError
from widenet.figures import png_bytes
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.gd_convergence import analysis as gd_analysis
from widenet.studies.gd_convergence import config as gd_config
from widenet.studies.gd_convergence import measure as gd_measure

TINY = {"widths": [16, 64], "seeds": 2, "points": 8, "dim": 4, "decades": 4.0}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_in_memory(get_study("gd-convergence"), tmp_path_factory.mktemp("gd"), **TINY)


def test_end_to_end_tables_figures_and_checks(tiny_run):
    _config, analysis = tiny_run
    runs = analysis.tables["runs"]
    assert len(runs) == 4
    assert set(runs["m"]) == {16, 64}
    assert set(runs["seed"]) == {0, 1}
    for column in ("m", "seed", "params", "status", "lr", "steps", "rate", "rate_pred",
                   "rate_asymptotic", "deviation_max", "distance", "distance_pred",
                   "distance_entk", "relative_movement", "relative_movement_pred",
                   "rate_error", "distance_error", "loss_ratio", "du_factor"):
        assert column in runs.columns, column
    assert (runs["status"] == "completed").all()
    assert runs["lr"].nunique() == 1
    assert runs["steps"].nunique() == 1
    assert set(analysis.tables["widths"]["m"]) == {16, 64}
    assert set(analysis.tables["fits"]["quantity"]) == {"deviation_max", "relative_movement",
                                                        "relative_movement_pred",
                                                        "lambda_min_gap"}
    assert set(analysis.figures) == {"loss_curves", "rate", "deviation", "distance"}
    assert png_bytes(analysis.figures["loss_curves"]).startswith(b"\x89PNG")
    names = [check.name for check in analysis.checks]
    assert names == ["linear rate", "converges at shared lr", "curves collapse",
                     "distance travelled", "lambda_min concentrates"]
    assert all(check.verdict in VERDICTS for check in analysis.checks)


def test_tasks_are_deterministic_and_start_on_the_prediction(tmp_path):
    config = validate_config(gd_config.GDConfig, TINY)
    task = gd_measure.plan(config)[1]
    assert task.key == "m=16/seed=1"
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, second = task.compute(context), task.compute(context)
    pd.testing.assert_frame_equal(first["runs"], second["runs"])
    pd.testing.assert_frame_equal(first["curves"], second["curves"])
    start = first["curves"].iloc[0]  # the prediction starts from the network's own f_0
    assert start["step"] == 0
    assert start["deviation"] < 1e-14
    assert start["loss_pred"] == pytest.approx(start["loss"], rel=1e-12)


# --- the physics ------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2])
def test_ntk_is_jacobian_gram_of_widenet_parameters(depth):
    """Theta = J J^T with J taken w.r.t. the N(0,1) variables widenet trains (brute force)."""
    x = sphere_points(6, 3, seed=1)
    net = MLP(3, [5] * depth, 1, "relu", weight_std=None, seed=2, dtype=torch.float64)
    torch.testing.assert_close(empirical_ntk(net, x).ntk, brute_force_ntk(net, x), rtol=1e-12,
                               atol=1e-12)


def test_gd_on_the_linearized_model_travels_the_min_norm_distance():
    """GD from theta_0 stays in the row space of J and ends at theta_0 - J^T Theta^-1 r_0, so
    ||theta_T - theta_0|| = sqrt(r_0^T Theta^-1 r_0) with Theta = J J^T; and its residual
    follows the closed form y + (I - lr Theta / n)^s r_0 exactly."""
    x = sphere_points(6, 4, seed=3)
    y = torch.randn(6, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    net = MLP(4, [32], 1, "relu", weight_std=None, seed=5, dtype=torch.float64)
    theta = empirical_ntk(net, x).ntk
    with torch.no_grad():
        f0 = net(x)
    lr = gd_measure.shared_learning_rate(theta, 1.0)
    steps = gd_measure.step_count(gd_measure.contraction_factor(theta, lr), 20.0)
    lin = linearize(net)
    start = parameter_snapshot(lin)
    result = train(lin, x, y, lr=lr, steps=steps, log_every=steps, progress=False)
    moved = weight_movement(lin, start).absolute
    assert moved == pytest.approx(gd_measure.min_norm_distance(theta, f0 - y), rel=1e-8)
    with torch.no_grad():
        final = lin(x)
    torch.testing.assert_close(final, KernelDynamics(theta, y, f0).gd_train(steps, lr),
                               rtol=0, atol=1e-12)
    assert result.history["loss"].iloc[-1] < 1e-20 * result.history["loss"].iloc[0]


def test_min_norm_distance_matches_an_explicit_inverse():
    a = torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kernel = a @ a.T + torch.eye(5, dtype=torch.float64)
    r = torch.arange(5, dtype=torch.float64).reshape(5, 1)
    expected = math.sqrt(float(r.T @ torch.linalg.inv(kernel) @ r))
    assert gd_measure.min_norm_distance(kernel, r) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(WidenetError, match="singular"):
        gd_measure.min_norm_distance(a[:, :2] @ a[:, :2].T, r)
    assert gd_measure.entk_distance(kernel, r) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(gd_measure.entk_distance(a[:, :2] @ a[:, :2].T, r))


def test_nets_with_fewer_parameters_than_points_are_data_not_a_crash(tmp_path):
    """m = 1 with d = 4: 5 parameters for 8 points, a singular eNTK."""
    _, analysis = run_in_memory(get_study("gd-convergence"), tmp_path,
                                **{**TINY, "widths": [1, 2]})
    runs = analysis.tables["runs"]
    assert runs.loc[runs["m"] == 1, "distance_entk"].isna().all()
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


def test_learning_rate_contraction_and_step_count_on_a_diagonal_kernel():
    theta = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    lr = gd_measure.shared_learning_rate(theta, 1.0)
    assert lr == pytest.approx(3 / 4)  # n / lambda_max
    rho = gd_measure.contraction_factor(theta, lr)  # max |1 - lr lambda / n| = 1 - 1/4
    assert rho == pytest.approx(0.75)
    assert gd_measure.contraction_factor(theta, gd_measure.shared_learning_rate(theta, 1.9)) \
        == pytest.approx(0.9)  # the fastest mode overshoots: |1 - 1.9| = 0.9 > 1 - 1.9/4
    steps = gd_measure.step_count(rho, 6.0)
    assert rho ** (2 * steps) <= 1e-6 < rho ** (2 * (steps - 1))
    assert gd_measure.step_count(0.0, 6.0) == 1  # all eigenvalues equal: one step interpolates
    with pytest.raises(WidenetError, match="does not contract"):
        gd_measure.step_count(1.0, 6.0)


def test_decay_rate_of_an_exact_geometric_curve():
    steps = np.arange(0, 101)
    rho = 0.93
    losses = 3.0 * rho ** (2 * steps) + 1e-3 * 0.5 ** (2 * steps)
    assert gd_measure.decay_rate(steps, losses, 50) == pytest.approx(-2 * math.log(rho), rel=1e-9)
    assert math.isnan(gd_measure.decay_rate(steps, losses, 100.5))


def test_shared_lr_depends_on_the_data_not_the_width():
    x = sphere_points(10, 5, seed=0)
    rates = {gd_measure.shared_learning_rate(infinite_kernels(
        MLP(5, [m], 1, "relu", seed=0, dtype=torch.float64), x).ntk, 1.0) for m in (8, 512)}
    assert len(rates) == 1


def test_prediction_monitor_measures_distance_from_the_closed_form():
    """On the linearized model with its own eNTK, GD follows the closed form: deviation ~ 0;
    for the prediction of another kernel it is ||f_s - f_pred,s|| / ||r_0||, checked by hand."""
    x = sphere_points(6, 4, seed=7)
    y = torch.randn(6, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    net = MLP(4, [16], 1, "relu", seed=9, dtype=torch.float64)
    lin = linearize(net)
    theta = empirical_ntk(net, x).ntk
    with torch.no_grad():
        f0 = net(x)
    lr = gd_measure.shared_learning_rate(theta, 1.0)
    monitor = gd_measure._PredictionDeviation(KernelDynamics(theta, y, f0), lr,
                                              float((f0 - y).norm()))
    history = train(lin, x, y, lr=lr, steps=30, log_every=5, monitors=[monitor],
                    progress=False).measurements[monitor.name]
    assert list(history["step"]) == [0, 5, 10, 15, 20, 25, 30]
    assert history["deviation"].max() < 1e-12
    other = KernelDynamics(2 * theta, y, f0)
    state = RunState(model=lin, x=x, y=y, loss_fn=mse, lr=lr, step=3)
    with torch.no_grad():
        expected = float((lin(x) - other.gd_train(3, lr)).norm() / (f0 - y).norm())
    measured = gd_measure._PredictionDeviation(other, lr, float((f0 - y).norm())).measure(state)
    assert measured["deviation"] == pytest.approx(expected, rel=1e-12)


def test_extrapolated_tolerance_follows_the_m_half_law():
    m = np.repeat([100, 400, 1600], 2)
    errors = 0.3 * np.tile([1.0, -1.0], 3) / np.sqrt(m)
    runs = pd.DataFrame({"m": m, "rate_error": errors})
    assert gd_analysis.extrapolated_tolerance(runs, "rate_error") \
        == pytest.approx(gd_analysis.BAND_SIGMAS * 0.3 / 40)


@pytest.mark.parametrize(("offset", "verdict"), [(0.0, "pass"), (0.2, "fail")])
def test_widest_width_check_passes_the_m_half_law_and_fails_a_constant_error(offset, verdict):
    """Errors c / sqrt(m) (the theory) pass; a width-independent error of 20% does not."""
    m = np.repeat([100, 400, 1600], 4)
    noise = np.tile([1.0, -1.0, 0.5, -0.5], 3)
    runs = pd.DataFrame({"m": m, "rate_error": offset + (0.5 + 0.3 * noise) / np.sqrt(m)})
    check = gd_analysis._widest_error_check(runs, "rate_error", "linear rate", "claim")
    assert check.verdict == verdict


def test_asymptotic_rate_of_a_one_step_interpolation_is_infinite():
    assert gd_measure.asymptotic_rate(0.5) == pytest.approx(-2 * math.log(0.5))
    assert gd_measure.asymptotic_rate(0.0) == math.inf


def test_widest_width_check_without_a_finite_narrow_error_is_inconclusive():
    runs = pd.DataFrame({"m": [8, 8, 16, 16], "rate_error": [math.nan, math.nan, 0.01, 0.02]})
    assert math.isnan(gd_analysis.extrapolated_tolerance(runs, "rate_error"))
    check = gd_analysis._widest_error_check(runs, "rate_error", "linear rate", "claim")
    assert check.verdict == "inconclusive"
    assert check.measured == pytest.approx(0.015)


def test_two_antipodal_points_run_without_a_crash(tmp_path):
    """d = 1, n = 2: x = +-1, Theta = c I, so lr_factor = 1 interpolates in one step (rho = 0)
    and no rate can be fitted: the rate checks are inconclusive, not a crash."""
    _, analysis = run_in_memory(get_study("gd-convergence"), tmp_path,
                                **{**TINY, "points": 2, "dim": 1})
    runs = analysis.tables["runs"]
    assert (runs["rate_asymptotic"] == math.inf).all()
    verdicts = {check.name: check.verdict for check in analysis.checks}
    assert verdicts["linear rate"] == "inconclusive"
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


def test_convergence_check_fails_a_diverged_run():
    runs = pd.DataFrame({"m": [8, 16], "status": ["completed", "diverged"],
                         "loss_initial": [1.0, 1.0], "loss_final": [1e-9, math.nan],
                         "rate": [0.1, math.nan], "rate_pred": [0.1, 0.1],
                         "distance": [1.0, 1.0], "distance_pred": [1.0, 1.0],
                         "du_factor": [0.9, 0.9], "steps": [100, 100], "lr": [1.0, 1.0],
                         "lambda_min_inf": [2.0, 2.0], "lambda_min_entk": [2.1, 2.1]})
    check = gd_analysis.convergence_check(gd_analysis.with_errors(runs), decades=8)
    assert check.measured == pytest.approx(math.log10(gd_analysis.DIVERGED_RATIO))
    assert check.verdict == "fail"


# --- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"width": [8]}, "unknown config key 'width'"),
    ({"widths": [64]}, "config key 'widths'"),
    ({"widths": [64, 64]}, "config key 'widths'"),
    ({"widths": [0, 8]}, "config key 'widths'"),
    ({"lr_factor": 2.5}, "config key 'lr_factor'"),
    ({"lr_factor": 0}, "config key 'lr_factor'"),
    ({"activation": "swish"}, "config key 'activation'"),
    ({"seeds": 1}, "config key 'seeds'"),
    ({"decades": 0}, "config key 'decades'"),
    ({"decades": 40}, "config key 'decades'"),
    ({"fit_fraction": 1.0}, "config key 'fit_fraction'"),
    ({"dataset": "spirals"}, "config key 'dataset'"),
    ({"depth": 0}, "config key 'depth'"),
    ({"seed": -1}, "config key 'seed'"),
    ({"points": 1}, "config key 'points'"),
])
def test_bad_config_raises_one_line_naming_the_key(values, message):
    with pytest.raises(WidenetError, match=message):
        validate_config(gd_config.GDConfig, values)


def test_presets_validate_and_widths_are_sorted():
    assert validate_config(gd_config.GDConfig, gd_config.GDConfig.QUICK).widths == [128, 512, 2048]
    assert validate_config(gd_config.GDConfig, {"widths": [64, 8]}).widths == [8, 64]


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the quick preset")
    _, analysis = run_in_memory(get_study("gd-convergence"), tmp_path)
    failed = [(c.name, c.verdict, c.measured, c.tolerance) for c in analysis.checks
              if c.verdict != "pass"]
    assert not failed


def _lambda_min_runs(gaps_by_width: dict[int, list[float]]) -> pd.DataFrame:
    rows = [{"m": m, "status": "completed", "loss_initial": 1.0, "loss_final": 0.1,
             "rate": 1.0, "rate_pred": 1.0, "distance": 1.0, "distance_pred": 1.0,
             "deviation_max": 1.0 / m, "relative_movement": 1.0, "relative_movement_pred": 1.0,
             "params": m, "lambda_min_inf": 2.0, "lambda_min_entk": 2.0 * (1 + gap)}
            for m, gaps in gaps_by_width.items() for gap in gaps]
    return gd_analysis.with_errors(pd.DataFrame(rows))


def test_lambda_min_check_needs_a_significant_decay_in_width():
    """Relative gaps |lambda_min(K_0)/lambda_min(Theta) - 1| falling like m^-1/2 pass; gaps of
    the same size at every width do not (the slope is 0 within its noise)."""
    decaying = _lambda_min_runs({m: [s * m**-0.5 for s in (0.8, 1.0, -1.2)]
                                 for m in (128, 512, 2048)})
    check = gd_analysis.lambda_min_check(gd_analysis.fit_table(decaying),
                                         gd_analysis.width_table(decaying))
    assert check.measured == pytest.approx(-0.5, abs=1e-9)
    assert check.verdict == "pass"
    flat = _lambda_min_runs({m: [0.05, 0.1, 0.2] for m in (128, 512, 2048)})
    check = gd_analysis.lambda_min_check(gd_analysis.fit_table(flat), gd_analysis.width_table(flat))
    assert check.measured == pytest.approx(0.0, abs=1e-9)
    assert check.verdict == "inconclusive"
