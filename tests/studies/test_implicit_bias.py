"""The implicit-bias study: end to end on tiny sizes, its measurements against independent
computations, and its config errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import nnls

from tests.conftest import FULL
from tests.studies.conftest import run_in_memory
from widenet import MLP
from widenet.checks import VERDICTS
from widenet.diagnostics.margins import margins_of
from widenet.errors import WidenetError
from widenet.figures import png_bytes
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.implicit_bias.analysis import linear_fit, run_statistics
from widenet.studies.implicit_bias.config import ImplicitBiasConfig
from widenet.studies.implicit_bias.measure import (
    max_margin,
    separable_data,
    small_net,
    tangent_margin,
)

STUDY = get_study("implicit-bias")
TINY = {"activations": ["relu"], "width": 16, "n": 12, "dim": 4, "steps": 200,
        "log_every": 10}


def test_tiny_run_end_to_end(tmp_path):
    config, analysis = run_in_memory(STUDY, tmp_path, **TINY)
    assert [task.key for task in STUDY.plan(config)] == ["relu/L=1/m=16/seed=0",
                                                         "relu/L=1/m=16/seed=1"]
    runs, summary = analysis.tables["runs"], analysis.tables["summary"]
    assert {"activation", "depth", "degree", "seed", "status", "lazy_margin",
            "final_tangent_margin", "separation_step", "decrease_fraction", "norm_slope",
            "norm_exponent", "margin_gain", "rich_over_lazy"} <= set(runs.columns)
    assert len(runs) == 2
    assert (runs["degree"] == 2).all()
    assert {"runs", "completed", "decrease_fraction_max", "rich_over_lazy",
            "rich_over_lazy_se", "norm_slope_se"} <= set(summary.columns)
    assert set(analysis.figures) == {"margins", "norm", "final-margins", "convergence"}
    assert {"direction_decay", "alignment_decay", "kkt_decay", "final_stationarity",
            "final_slackness"} <= set(runs.columns)
    assert list(analysis.tables["runs"]["checkpoints"]) == [6, 6]
    assert len(analysis.checks) == 7
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    assert analysis.diverged == ""


def test_a_diverging_run_is_data_not_a_crash(tmp_path):
    _, analysis = run_in_memory(STUDY, tmp_path, **{**TINY, "lr": 1e4, "seeds": 1,
                                                    "steps": 50})
    runs = analysis.tables["runs"]
    assert (runs["status"] == "diverged").all()
    assert analysis.tables["summary"]["completed"].iloc[0] == 0
    assert all(check.verdict == "inconclusive" for check in analysis.checks)
    assert analysis.diverged.startswith("all 1 training runs diverged")
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


@pytest.mark.parametrize("values", [{"lr": 1e300}, {"init_scale": 1e3}])
def test_a_run_diverging_at_once_is_data_not_a_crash(tmp_path, values):
    """At init_scale = 1e3 the loss is inf before the first step, so no margin is logged."""
    _, analysis = run_in_memory(STUDY, tmp_path, **{**TINY, **values, "seeds": 1,
                                                    "steps": 20})
    assert (analysis.tables["runs"]["status"] == "diverged").all()
    assert analysis.diverged
    assert all(check.verdict == "inconclusive" for check in analysis.checks)
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


def test_task_is_deterministic(tmp_path):
    config = validate_config(ImplicitBiasConfig, {**TINY, "steps": 30})
    task = STUDY.plan(config)[1]
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, second = task.compute(context), task.compute(context)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


@pytest.mark.parametrize(("n", "p"), [(4, 30), (20, 200)])
def test_max_margin_matches_nnls(n, p):
    """The dual QP against scipy's NNLS on the Cholesky factor, and the primal margin of the
    returned classifier against a direct computation."""
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, p))
    labels = np.sign(features @ rng.normal(size=p))
    kernel = features @ features.T
    achieved, upper = max_margin(torch.tensor(kernel), torch.tensor(labels))
    q = labels[:, None] * kernel * labels[None, :]
    factor = np.linalg.cholesky(q).T
    alpha, _ = nnls(factor, np.linalg.solve(factor.T, np.ones(n)))
    w = features.T @ (alpha * labels)
    reference = float(np.min(labels * (features @ w)) / np.linalg.norm(w))
    assert achieved == pytest.approx(reference, rel=1e-9)
    assert achieved * (1 - 1e-12) <= upper <= achieved * (1 + 1e-9)


def test_max_margin_of_two_points_matches_brute_force():
    """Two points labelled +-1 in the plane, no bias: max over unit w of min_i y_i <w, x_i>,
    brute-forced over a fine grid of directions."""
    points = torch.tensor([[2.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0], dtype=torch.float64)
    achieved, _ = max_margin(points @ points.T, labels)
    angles = torch.linspace(0, 2 * math.pi, 200001, dtype=torch.float64)
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)
    brute = (labels[:, None] * (points @ directions.T)).min(dim=0).values.max()
    # the brute force misses the best direction by at most half a grid step, which moves each
    # y_i <w, x_i> by at most half the step times ||x_i||
    slack = float(angles[1] - angles[0]) / 2 * float(points.norm(dim=1).max())
    assert float(brute) <= achieved <= float(brute) + slack


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_max_margin_is_independent_of_the_kernel_scale(scale):
    """gamma*(c K) = sqrt(c) gamma*(K): the solver's tolerances must not see the scale."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(8, 40))
    labels = torch.tensor(np.sign(features @ rng.normal(size=40)))
    kernel = torch.tensor(features @ features.T)
    reference, _ = max_margin(kernel, labels)
    achieved, upper = max_margin(scale * kernel, labels)
    assert achieved == pytest.approx(math.sqrt(scale) * reference, rel=1e-9)
    assert upper == pytest.approx(achieved, rel=1e-9)


def test_max_margin_refuses_a_non_finite_kernel():
    kernel = torch.tensor([[math.inf, 0.0], [0.0, 1.0]], dtype=torch.float64)
    with pytest.raises(WidenetError, match="non-finite"):
        max_margin(kernel, torch.tensor([1.0, -1.0]))


def test_max_margin_refuses_inseparable_points():
    points = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    with pytest.raises(WidenetError, match="separable"):
        max_margin(points @ points.T, torch.tensor([1.0, -1.0]))


@pytest.mark.parametrize(("activation", "depth"), [("relu", 1), ("abs", 2)])
def test_tangent_margin_bounds_the_margin_and_ignores_scale(activation, depth):
    """Euler: gamma(theta) = (1/L_h) min_i y_i <theta/||theta||, grad f_i> / ||theta||^(L_h-1)
    <= gamma_tangent(theta), with equality-free slack; scaling theta leaves both unchanged."""
    config = validate_config(ImplicitBiasConfig, {**TINY, "n": 8})
    x, y = separable_data(config, 0, torch.device("cpu"))
    net = small_net(config, activation, depth, 0, torch.device("cpu"))
    gamma = margins_of(net, x, y).normalized
    tangent = tangent_margin(net, x, y)
    assert gamma <= tangent
    bigger = MLP(config.dim, [config.width] * depth, 1, activation, dtype=torch.float64)
    bigger.load_state_dict({k: 7.0 * v for k, v in net.state_dict().items()})
    assert tangent_margin(bigger, x, y) == pytest.approx(tangent, rel=1e-9)


def test_tangent_margin_of_a_kkt_point_equals_its_margin():
    """A one-hidden-layer linear net f = c v^T W x (c the product of the layers' multipliers)
    with W = u a^T, v = u, ||u|| = 1 and a the max-margin direction of the data (brute force
    over the circle) is balanced and aligned, a KKT point of min ||theta||^2 s.t.
    y_i f(x_i) >= 1: there gamma(theta) = gamma_tangent(theta) (both c gamma_a / 2)."""
    x = torch.tensor([[2.0, 1.0], [-1.0, 1.0], [3.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    angles = torch.linspace(0, 2 * math.pi, 400001, dtype=torch.float64)
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)
    direction = directions[(y[:, None] * (x @ directions.T)).min(dim=0).values.argmax()]
    net = MLP(2, [3], 1, "identity", weight_std=1.0, dtype=torch.float64)
    u = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64)
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.outer(u, direction))
        net.layers[1].weight.copy_(u[None, :])
    gamma = margins_of(net, x, y).normalized
    assert gamma > 0
    assert tangent_margin(net, x, y) == pytest.approx(gamma, rel=1e-4)


def test_run_statistics_on_a_hand_made_trajectory():
    """t_0, the decrease fraction, the margin gain and the late fits from known series."""
    steps = np.arange(0, 1001, 10)
    time = steps.astype(float)
    smoothed = np.where(steps < 100, -1.0, 0.01 + 1e-6 * steps)
    smoothed[50] -= 1e-3  # one decrease among the logged steps after t_0
    norm = np.sqrt(3.0 + 5.0 * np.log(np.maximum(time, 1.0)))  # ||theta||^2 = 3 + 5 log t
    trajectory = pd.DataFrame({"activation": "relu", "depth": 1, "degree": 2, "seed": 0,
                               "step": steps, "time": time, "smoothed_margin": smoothed,
                               "normalized_margin": smoothed + 0.5, "parameter_norm": norm})
    runs = pd.DataFrame([{"activation": "relu", "depth": 1, "degree": 2, "seed": 0,
                          "status": "completed", "lazy_margin": 0.25,
                          "final_tangent_margin": 0.6}])
    stats = run_statistics(trajectory, runs, late_step=200).iloc[0]
    assert stats["separation_step"] == 100
    assert stats["decrease_fraction"] == pytest.approx(1 / 90)
    assert stats["margin_gain"] == pytest.approx(9e-4, abs=1e-12)
    assert stats["norm_slope"] == pytest.approx(5.0, rel=1e-9)
    assert stats["norm_slope_se"] == pytest.approx(0.0, abs=1e-9)
    assert stats["rich_over_lazy"] == pytest.approx(stats["final_margin"] / 0.25)


def test_linear_fit_stderr_matches_the_textbook_formula():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 50)
    y = 2.0 + 3.0 * x + rng.normal(scale=0.1, size=50)
    slope, stderr = linear_fit(x, y)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
    covariance = residual[0] / (len(x) - 2) * np.linalg.inv(design.T @ design)
    assert slope == pytest.approx(coef[1])
    assert stderr == pytest.approx(math.sqrt(covariance[1, 1]))


@pytest.mark.parametrize(("values", "key"), [
    ({"bogus": 1}, "bogus"),
    ({"activations": ["tanh"]}, "activations"),
    ({"activations": ["nope"]}, "activations"),
    ({"depths": []}, "depths"),
    ({"depths": [0]}, "depths"),
    ({"loss": "mse"}, "loss"),
    ({"init_scale": 0.0}, "init_scale"),
    ({"init_scale": 1e300}, "init_scale"),
    ({"init_scale": 1e-300}, "init_scale"),
    ({"late_fraction": 1.0}, "late_fraction"),
    ({"checkpoints": 2}, "checkpoints"),
    ({"seed": -1}, "seed"),
])
def test_config_errors_name_the_key(values, key):
    with pytest.raises(WidenetError, match=key):
        validate_config(ImplicitBiasConfig, values)


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the quick preset")
    _, analysis = run_in_memory(STUDY, tmp_path)
    # cos(theta, -grad L) -> 1 is not reached in 3000 steps (docs/studies/implicit-bias.md):
    # the alignment checks may be inconclusive or fail as a documented finding, nothing else
    failing = [(c.name, c.measured, c.verdict) for c in analysis.checks if c.verdict != "pass"
               and not (c.name.startswith("weights align with -gradient")
                        and (c.verdict == "inconclusive" or c.note.startswith("finding:")))]
    assert not failing
