"""Tests of the lr-transfer study: end to end, its measurements against exact identities, config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FULL
from tests.studies.conftest import run_in_memory
from widenet import MLP, train
from widenet.checks import VERDICTS
from widenet.dynamics.losses import cross_entropy
from widenet.dynamics.monitor import RunState
from widenet.errors import WidenetError
from widenet.figures import png_bytes
from widenet.parametrizations import NTK, STANDARD, MuP
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.lr_transfer import analysis as lrt_analysis
from widenet.studies.lr_transfer import config as lrt_config
from widenet.studies.lr_transfer import measure as lrt_measure

TINY = {"widths": [16, 32], "seeds": 2, "steps": 5, "points": 64, "test_points": 32,
        "batch_size": 16, "sgd_log2_lr": [-3, -1], "adam_log2_lr": [-8, -6], "coord_steps": 2,
        "coord_seeds": 2, "parametrizations": ["standard", "mup"]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one thread is fastest, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, _one_thread):
    return run_in_memory(get_study("lr-transfer"), tmp_path_factory.mktemp("lr"), **TINY)


def test_end_to_end_tables_figures_and_checks(tiny_run):
    _config, analysis = tiny_run
    sweep = analysis.tables["sweep"]
    assert len(sweep) == 2 * 2 * 2 * 2 * 3  # parametrizations x optimizers x m x seeds x lrs
    for column in ("parametrization", "optimizer", "m", "seed", "log2_lr", "lr", "status",
                   "steps_done", "train_loss", "test_loss", "test_accuracy"):
        assert column in sweep.columns, column
    coords = analysis.tables["coords"]
    assert set(coords["layer"]) == {1, 2, 3}
    assert set(coords["step"]) == {0, 1, 2}
    for column in ("mean_abs", "mean_abs_change", "log2_lr", "status"):
        assert column in coords.columns, column
    optima = analysis.tables["optima"]
    assert len(optima) == 2 * 2 * 2 * 2
    assert set(analysis.tables["drifts"]["parametrization"]) == {"standard", "mup"}
    assert len(analysis.tables["coord_slopes"]) == 2 * 2 * 3
    assert set(analysis.figures) == {"loss_vs_lr", "optimal_lr", "coordinate_check_sgd",
                                     "coordinate_check_adam"}
    assert png_bytes(analysis.figures["loss_vs_lr"]).startswith(b"\x89PNG")
    names = [check.name for check in analysis.checks]
    assert sorted(names) == sorted([
        "SP lr drifts (sgd)", "SP lr drifts (adam)", "muP lr transfers (sgd)",
        "muP lr transfers (adam)", "SP logits grow (sgd)", "SP logits grow (adam)",
        "muP coordinates flat (sgd)", "muP coordinates flat (adam)"])
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    by_name = {check.name: check for check in analysis.checks}
    assert by_name["SP lr drifts (adam)"].predicted == pytest.approx(1.0)  # log2(32 / 16)
    assert by_name["muP lr transfers (sgd)"].predicted == 0.0
    assert analysis.diverged == ""


def test_tasks_are_deterministic_with_readable_keys(tmp_path):
    config = validate_config(lrt_config.LRTransferConfig, TINY)
    tasks = lrt_measure.plan(config)
    keys = [task.key for task in tasks]
    assert "sweep/mup/adam/m=32/seed=1" in keys
    assert "coord/standard/sgd/m=16/seed=0" in keys
    assert len(set(keys)) == len(keys) == 2 * 2 * 2 * 2 * 2
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    for key in ("sweep/standard/sgd/m=16/seed=1", "coord/mup/adam/m=32/seed=0"):
        task = tasks[keys.index(key)]
        first, second = task.compute(context), task.compute(context)
        for name in first:
            pd.testing.assert_frame_equal(first[name], second[name])


# --- the measurements ---------------------------------------------------------------------------

def test_mup_at_its_base_width_trains_exactly_like_sp(tmp_path):
    """Tensor Programs V: at the base width every muP ratio is 1, so the same seed gives the same
    net and the same updates as SP; every learning rate's losses must agree."""
    config = validate_config(lrt_config.LRTransferConfig, {**TINY, "base_width": 16})
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    for opt in ("sgd", "adam"):
        sp = lrt_measure.compute_sweep_task(config, "standard", opt, 16, 0, context)["sweep"]
        mup = lrt_measure.compute_sweep_task(config, "mup", opt, 16, 0, context)["sweep"]
        np.testing.assert_allclose(mup["train_loss"], sp["train_loss"], rtol=1e-6)
        wide_mup = lrt_measure.compute_sweep_task(config, "mup", opt, 32, 0, context)["sweep"]
        wide_sp = lrt_measure.compute_sweep_task(config, "standard", opt, 32, 0, context)["sweep"]
        assert not np.allclose(wide_mup["train_loss"], wide_sp["train_loss"], rtol=1e-6)


def test_parametrization_names_resolve_to_the_library_rules():
    assert lrt_measure.parametrization("standard", 8) is STANDARD
    assert lrt_measure.parametrization("ntk", 8) is NTK
    mup = lrt_measure.parametrization("mup", 8)
    assert isinstance(mup, MuP)
    assert mup.base_hidden == 8


def test_diverging_learning_rates_are_data_points(tmp_path):
    config = validate_config(lrt_config.LRTransferConfig, {**TINY, "sgd_log2_lr": [4, 8]})
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    sweep = lrt_measure.compute_sweep_task(config, "standard", "sgd", 32, 0, context)["sweep"]
    diverged = sweep[sweep["status"] == "diverged"]
    assert len(diverged) >= 1
    assert np.isinf(diverged["train_loss"]).all()
    assert diverged["test_accuracy"].isna().all()
    assert (diverged["steps_done"] < config.steps).all()


def test_a_study_whose_every_run_diverged_is_recorded_not_crashed(tmp_path):
    """Every sweep rate and the coordinate check's rate blow up: no coordinate-check run
    reaches its last step, and every check is inconclusive."""
    values = {**TINY, "sgd_log2_lr": [18, 20], "adam_log2_lr": [18, 20],
              "coord_sgd_log2_lr": 20, "coord_adam_log2_lr": 20}
    _, analysis = run_in_memory(get_study("lr-transfer"), tmp_path, **values)
    assert analysis.diverged.startswith("all 48 learning-rate sweep runs diverged")
    slopes = analysis.tables["coord_slopes"]
    assert len(slopes) == 2 * 2 * 3
    assert slopes["slope"].isna().all()
    assert all(check.verdict == "inconclusive" for check in analysis.checks)
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


def test_refined_optimum_recovers_the_vertex_of_a_parabola():
    k = np.arange(-6, 1)
    for vertex in (-3.0, -3.4, -2.6):
        losses = np.exp(0.7 * (k - vertex) ** 2 - 1.0)
        log2_opt, argmin, at_edge = lrt_analysis.refined_optimum(k, losses)
        assert log2_opt == pytest.approx(vertex, abs=1e-12)
        assert argmin == round(vertex)
        assert not at_edge
    losses = np.exp(0.7 * (k + 1.0) ** 2)
    losses[-1] = math.inf  # a diverged neighbour: the grid argmin, no refinement
    assert lrt_analysis.refined_optimum(k, losses) == (-1.0, -1.0, False)
    assert lrt_analysis.refined_optimum(k, np.exp(-k)) == (0.0, 0.0, True)  # edge of the grid
    assert all(math.isnan(v) for v in lrt_analysis.refined_optimum(k, np.full(7, math.inf))[:2])


def test_drift_of_an_exact_inverse_width_law():
    """lr* = 2^3 / m exactly: slope -1, drift -log2(m_max / m_min) grid steps, stderr 0."""
    widths = [64, 128, 256, 1024]
    rows = [{"parametrization": "standard", "optimizer": "adam", "m": m, "seed": s,
             "log2_lr_opt": 3 - math.log2(m), "log2_lr_argmin": 3 - math.log2(m),
             "at_edge": False} for m in widths for s in range(2)]
    drift = lrt_analysis.drift_table(pd.DataFrame(rows), widths).iloc[0]
    assert drift["slope"] == pytest.approx(-1.0, abs=1e-12)
    assert drift["drift"] == pytest.approx(-4.0, abs=1e-12)
    assert drift["drift_stderr"] == pytest.approx(0.0, abs=1e-9)
    assert drift["drift_pred"] == pytest.approx(-4.0)
    assert drift["argmin_spread"] == 4.0


def _optima(name: str, widths: list[int], log2_opt, at_edge) -> pd.DataFrame:
    """Synthetic optima of two seeds per width: ``log2_opt(m, seed)``, ``at_edge(m, seed)``."""
    return pd.DataFrame([
        {"parametrization": name, "optimizer": "sgd", "m": m, "seed": s,
         "log2_lr_opt": log2_opt(m, s), "log2_lr_argmin": round(log2_opt(m, s)),
         "at_edge": at_edge(m, s)} for m in widths for s in range(2)])


def test_optima_at_the_grid_edge_are_left_out_of_the_drift_fit():
    """Seed 1 at m = 256 sits on the grid's bottom edge at -20: fitting it would steepen the
    slope; the fit over the other 7 optima recovers the exact law lr* = 2^-3 / m, and the
    censored sample makes the drift's standard error unknown (NaN)."""
    widths = [32, 64, 128, 256]
    optima = _optima("standard", widths,
                     lambda m, s: -20.0 if (m, s) == (256, 1) else -3 - math.log2(m) + 0.1 * s,
                     lambda m, s: (m, s) == (256, 1))
    drift = lrt_analysis.drift_table(optima, widths).iloc[0]
    assert drift["slope"] == pytest.approx(-1.0, abs=0.02)
    assert math.isfinite(drift["slope_stderr"])
    assert math.isnan(drift["drift_stderr"])
    assert (drift["edge_optima"], drift["fitted_optima"], drift["optima"]) == (1, 7, 8)
    check = lrt_analysis._drift_checks(pd.DataFrame([drift]))[0]
    assert check.verdict == "inconclusive"  # measured 3 >= 1 would pass: the bound is unknown
    assert "1 of 8 optima at the grid's edge" in check.note


def test_drift_checks_with_every_optimum_at_the_edge_are_inconclusive():
    """The bug: a grid whose top every optimum hits (quick preset, sgd_log2_lr=-10,-7) gave
    drift 0 +- 0, so muP passed and SP failed on bounds alone; both must be inconclusive."""
    widths = [32, 64, 128, 256]
    optima = pd.concat([_optima(name, widths, lambda m, s: -7.0, lambda m, s: True)
                        for name in ("mup", "standard")])
    drifts = lrt_analysis.drift_table(optima, widths)
    assert drifts["slope"].isna().all()
    assert (drifts["edge_optima"] == 8).all()
    assert (drifts["fitted_optima"] == 0).all()
    verdicts = {check.name: check.verdict for check in lrt_analysis._drift_checks(drifts)}
    assert verdicts == {"muP lr transfers (sgd)": "inconclusive",
                        "SP lr drifts (sgd)": "inconclusive"}


def test_drift_checks_without_a_standard_error_are_inconclusive_and_else_can_fail():
    """Two interior optima (one seed at each of two widths) fit a slope but no standard error:
    inconclusive. With every optimum interior the checks judge the drift: a flat SP optimum
    with scatter fails "SP lr drifts", a muP optimum falling 3 steps fails "muP lr transfers"."""
    widths = [32, 256]
    optima = _optima("mup", widths, lambda m, s: -4.0 - math.log2(m / 32) * s,
                     lambda m, s: s == 1)
    drift = lrt_analysis.drift_table(optima, widths).iloc[0]
    assert drift["fitted_optima"] == 2
    assert math.isnan(drift["slope_stderr"])
    assert lrt_analysis._drift_checks(pd.DataFrame([drift]))[0].verdict == "inconclusive"
    widths = [32, 64, 128, 256]
    flat_sp = _optima("standard", widths, lambda m, s: -4.0 + 0.1 * s, lambda m, s: False)
    falling_mup = _optima("mup", widths, lambda m, s: -4.0 - math.log2(m / 32) + 0.1 * s,
                          lambda m, s: False)
    drifts = lrt_analysis.drift_table(pd.concat([flat_sp, falling_mup]), widths)
    assert (drifts["edge_optima"] == 0).all()
    assert np.isfinite(drifts["drift_stderr"]).all()
    assert [check.verdict for check in lrt_analysis._drift_checks(drifts)] == ["fail", "fail"]


def test_shift_per_doubling_is_fitted_seed_by_seed():
    """Seed 0's optimum falls one step per doubling, seed 1's stays put: the shift is the mean
    of the two seeds' slopes, -1/2, with standard error std / sqrt(2) = 1/2."""
    widths = [32, 64, 128, 256]
    optima = _optima("ntk", widths, lambda m, s: -4.0 - math.log2(m / 32) * (1 - s),
                     lambda m, s: False)
    shift, stderr, seeds = lrt_analysis.seed_shifts(optima)
    assert (shift, stderr, seeds) == (pytest.approx(-0.5), pytest.approx(0.5), 2)
    drift = lrt_analysis.drift_table(optima, widths).iloc[0]
    assert drift["shift"] == pytest.approx(-0.5)
    assert drift["doublings"] == pytest.approx(3.0)


def test_the_optimal_lr_figure_shows_what_the_drift_checks_judge():
    """The bottom panel draws each seed's shift per doubling (NTK: seed 0 falls one step per
    doubling, seed 1 stays put; SP: both fall one step, seed 1 a tenth more), their mean
    ± s.e. (the checks' measured value) and the band each check accepts (+-1/3 for NTK over 3
    doublings, below -1/3 for SP)."""
    from matplotlib.collections import PathCollection, PolyCollection

    from widenet.studies.lr_transfer.figures import optimum_figure

    widths = [32, 64, 128, 256]
    optima = pd.concat([
        _optima("ntk", widths, lambda m, s: -4.0 - math.log2(m / 32) * (1 - s),
                lambda m, s: False),
        _optima("standard", widths, lambda m, s: -4.0 - math.log2(m / 32) * (1 + 0.1 * s),
                lambda m, s: False)])
    shifts = lrt_analysis.shift_table(optima)
    drifts = lrt_analysis.drift_table(optima, widths)
    figure = optimum_figure(optima, shifts, drifts, 32)
    assert "what the lr checks judge" in figure.get_label()
    bottom = figure.axes[1]
    drawn = [sorted(c.get_offsets()[:, 1]) for c in bottom.collections
             if isinstance(c, PathCollection)]
    assert drawn == [pytest.approx([-1.0, 0.0]), pytest.approx([-1.1, -1.0])]
    bars = [(float(c.lines[0].get_ydata()[0]),
             float(np.ptp(c.lines[2][0].get_segments()[0][:, 1])) / 2) for c in bottom.containers]
    assert bars == [(pytest.approx(-0.5), pytest.approx(0.5)),
                    (pytest.approx(-1.05), pytest.approx(0.05))]
    checks = lrt_analysis._drift_checks(drifts)
    assert [check.measured for check in checks] == [pytest.approx(-0.5), pytest.approx(1.05)]
    bands = [(float(c.get_paths()[0].vertices[:, 1].min()),
              float(c.get_paths()[0].vertices[:, 1].max())) for c in bottom.collections
             if isinstance(c, PolyCollection)]
    assert bands[0] == (pytest.approx(-1 / 3), pytest.approx(1 / 3))
    assert bands[1][1] == pytest.approx(-1 / 3)  # SP: everything below -1/3, to the panel's end
    assert bands[1][0] == pytest.approx(bottom.get_ylim()[0])
    assert png_bytes(figure).startswith(b"\x89PNG")


def _ntk_check(optima: pd.DataFrame, widths: list[int]):
    (check,) = lrt_analysis._drift_checks(lrt_analysis.drift_table(optima, widths))
    assert check.name == "NTK lr transfers (sgd)"
    return check


def test_ntk_transfer_check_states_which_claim_the_measurement_supports():
    """Over 32 -> 256 (3 doublings) transfer means |shift| <= 1/3 per doubling. A flat optimum
    passes (the framework's claim), one that falls half a step per doubling, the heuristic for
    NTK with Adam, fails (the muP paper's claim)."""
    widths = [32, 64, 128, 256]
    flat = _optima("ntk", widths, lambda m, s: 1.0 + 0.1 * s * (m == 64), lambda m, s: False)
    check = _ntk_check(flat, widths)
    assert check.verdict == "pass"
    assert (check.low, check.high) == (pytest.approx(-1 / 3), pytest.approx(1 / 3))
    assert check.note.startswith("supports the framework")
    falling = _optima("ntk", widths, lambda m, s: 1.0 - 0.5 * math.log2(m / 32) + 0.1 * s,
                      lambda m, s: False)
    check = _ntk_check(falling, widths)
    assert (check.verdict, check.measured) == ("fail", pytest.approx(-0.5))
    assert check.note.startswith("supports the muP paper")
    assert "shift of log2 lr* per doubling of m -0.500" in check.note


def test_ntk_transfer_check_with_an_optimum_at_the_grid_edge_is_inconclusive():
    """The old grid: NTK's SGD optimum sat on the grid's top at most widths. A flat run whose
    optimum at m = 256 is the top of the grid is a bound, not a measurement: inconclusive,
    even though the interior optima alone look flat."""
    widths = [32, 64, 128, 256]
    optima = _optima("ntk", widths, lambda m, s: 2.0 if m == 256 else 1.0 + 0.05 * s,
                     lambda m, s: m == 256)
    check = _ntk_check(optima, widths)
    assert check.verdict == "inconclusive"
    assert math.isnan(check.stderr)
    assert check.note.startswith("decides neither claim")
    assert "2 of 8 optima at the grid's edge" in check.note


def test_coordinate_slopes_average_the_per_seed_power_laws():
    rows = [{"parametrization": "mup", "optimizer": "sgd", "layer": 1, "step": 3, "m": m,
             "seed": s, "mean_abs": (1 + s) * m ** (0.1 * (s + 1)), "mean_abs_change": 2.0}
            for m in (8, 16, 64) for s in range(3)]
    slopes = lrt_analysis.coordinate_slopes(pd.DataFrame(rows), 3).iloc[0]
    assert slopes["slope"] == pytest.approx(0.2)  # mean of 0.1, 0.2, 0.3
    assert slopes["slope_stderr"] == pytest.approx(0.1 / math.sqrt(3))
    assert slopes["change_slope"] == pytest.approx(0.0, abs=1e-12)
    assert slopes["seeds"] == 3


def test_coordinate_checks_pick_the_steepest_layer_and_fail_flat_sp_logits():
    rows = [{"parametrization": name, "optimizer": "adam", "layer": layer, "slope": slope,
             "slope_stderr": 0.01}
            for name, values in (("mup", (0.02, -0.3, 0.05)), ("standard", (0.0, 0.5, 0.05)))
            for layer, slope in zip((1, 2, 3), values, strict=True)]
    mup, sp = lrt_analysis._coordinate_checks(pd.DataFrame(rows))
    assert (mup.measured, mup.note, mup.verdict) == (-0.3, "layer 2", "fail")
    assert (sp.measured, sp.verdict) == (0.05, "fail")  # the logits (layer 3) are checked
    rows[1]["slope"] = math.nan  # a layer whose runs all diverged
    assert lrt_analysis._coordinate_checks(pd.DataFrame(rows))[0].verdict == "inconclusive"


def test_coordinate_monitor_matches_a_hand_written_forward_pass():
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    net = MLP(5, [6, 6], 3, "relu", parametrization=MuP(base_hidden=3), seed=1)
    monitor = lrt_measure.CoordinateMonitor(x)
    state = RunState(model=net, x=x, y=torch.zeros(7, dtype=torch.long), loss_fn=cross_entropy,
                     lr=0.1, step=0)
    monitor.start(state)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(2.0)
        h, expected = x, []
        for index, layer in enumerate(net.layers):
            z = layer.weight_multiplier * h @ layer.weight.T
            expected.append(z)
            h = torch.relu(z) if index < 2 else h
    row = monitor.measure(state)
    for index, z in enumerate(expected, start=1):
        assert row[f"mean_abs/{index}"] == pytest.approx(float(z.abs().mean()), rel=1e-6)
        # doubling every weight: z_1 doubles, z_2 quadruples, z_3 is 8 x z_3,0
        assert row[f"mean_abs_change/{index}"] == pytest.approx(
            (1 - 2.0 ** -index) * float(z.abs().mean()), rel=1e-5)


def test_sp_one_adam_step_moves_logits_in_proportion_to_width_and_mup_does_not():
    """The scaling behind both checks, by brute force: after one Adam step at lr 1e-3, the mean
    |change| of the logits grows ~ m under SP (every readout coordinate moves by ~ lr, m of them
    add up coherently) and stays O(1) under muP (its readout lr is lr / r)."""
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(32) % 4
    changes = {}
    for name in ("standard", "mup"):
        for m in (64, 1024):
            net = MLP(8, [m, m], 4, "relu",
                      parametrization=lrt_measure.parametrization(name, 64), seed=3)
            monitor = lrt_measure.CoordinateMonitor(x)
            result = train(net, x, y, lr=1e-3, steps=1, loss="cross_entropy", optimizer="adam",
                           monitors=[monitor], log_every=1, progress=False)
            coordinates = result.measurements[monitor.name]
            changes[name, m] = float(coordinates["mean_abs_change/3"].iloc[-1])
    assert math.log2(changes["standard", 1024] / changes["standard", 64]) > 3.0  # ~ 4 for 16x
    assert abs(math.log2(changes["mup", 1024] / changes["mup", 64])) < 1.0


# --- config -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"width": [8]}, "unknown config key 'width'"),
    ({"widths": [64]}, "config key 'widths'"),
    ({"widths": [64, 64]}, "config key 'widths'"),
    ({"widths": [0, 8]}, "config key 'widths'"),
    ({"parametrizations": ["sp"]}, "config key 'parametrizations'"),
    ({"parametrizations": []}, "config key 'parametrizations'"),
    ({"optimizers": ["sgd", "sgd"]}, "config key 'optimizers'"),
    ({"optimizers": ["rmsprop"]}, "config key 'optimizers'"),
    ({"sgd_log2_lr": [0, 1]}, "config key 'sgd_log2_lr'"),
    ({"adam_log2_lr": [-3]}, "config key 'adam_log2_lr'"),
    ({"seeds": 1}, "config key 'seeds'"),
    ({"loss": "hinge"}, "config key 'loss'"),
    ({"batch_size": 1024}, "batch_size"),
    ({"points": 1700}, "points \\+ test_points"),
    ({"points": 32, "batch_size": 8}, "points must be >= 64"),
    ({"depth": 0}, "config key 'depth'"),
    ({"sgd_log2_lr": [5000, 5002]}, "config key 'sgd_log2_lr'"),
    ({"adam_log2_lr": [-100, -90]}, "config key 'adam_log2_lr'"),
    ({"coord_sgd_log2_lr": 1024}, "config key 'coord_sgd_log2_lr'"),
    ({"coord_adam_log2_lr": -1100}, "config key 'coord_adam_log2_lr'"),
])
def test_bad_config_raises_one_line_naming_the_key(values, message):
    with pytest.raises(WidenetError, match=message):
        validate_config(lrt_config.LRTransferConfig, values)


def test_presets_validate_and_defaults():
    quick = validate_config(lrt_config.LRTransferConfig, lrt_config.LRTransferConfig.QUICK)
    assert quick.widths == [32, 64, 128, 256]
    assert quick.base() == 32
    config = validate_config(lrt_config.LRTransferConfig, {"widths": [512, 64], "base_width": 128})
    assert config.widths == [64, 512]
    assert config.base() == 128
    assert config.log2_grid("adam") == list(range(-13, 0))


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the quick preset")
    _, analysis = run_in_memory(get_study("lr-transfer"), tmp_path)
    # SP and muP checks pass; NTK's transfer checks are the measurement (either claim may be
    # supported) but the extended grid must bracket its optimum: a finite standard error
    failed = [(c.name, c.verdict, c.measured, c.tolerance) for c in analysis.checks
              if c.verdict != "pass" and not c.name.startswith("NTK")]
    assert not failed
    ntk = [c for c in analysis.checks if c.name.startswith("NTK")]
    assert len(ntk) == 2
    assert all(math.isfinite(c.stderr) for c in ntk)
