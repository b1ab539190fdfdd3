"""Tests of the edge-of-stability study: end to end, measurements against brute force, config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FULL
from tests.studies.conftest import run_in_memory
from widenet import MLP
from widenet.checks import VERDICTS
from widenet.dynamics.losses import mse
from widenet.errors import WidenetError
from widenet.report.figures import png_bytes
from widenet.studies import StudyContext, get_study
from widenet.studies import _edge_of_stability_analysis as eos_analysis
from widenet.studies import edge_of_stability as eos
from widenet.studies.config import validate_config

TINY = {"points": 40, "width": 8, "depth": 2, "steps": 30, "losses": ["mse", "cross_entropy"],
        "sharpness_every": 10, "beyond_width": 2, "beyond_depth": 2, "beyond_factors": [0.5, 4.0],
        "beyond_steps": 20}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_in_memory(get_study("edge-of-stability"), tmp_path_factory.mktemp("eos"), **TINY)


def test_end_to_end_tables_figures_and_checks(tiny_run):
    _config, analysis = tiny_run
    summary = analysis.tables["eos_summary"]
    assert set(summary["loss_name"]) == {"mse", "cross_entropy"}
    for column in ("lr_factor", "lr", "edge", "sharpness_init", "status", "reached", "t_edge",
                   "sharpening"):
        assert column in summary.columns, column
    np.testing.assert_allclose(summary["edge"], 2 / summary["lr"])
    np.testing.assert_allclose(summary["lr"], summary["lr_factor"] * 2 / summary["sharpness_init"])
    beyond = analysis.tables["beyond_runs"]
    assert len(beyond) == 4
    assert set(beyond["c"]) == {0.5, 4.0}
    for column in ("scaled", "status", "explosions", "loss_final", "raw_sharpness_final",
                   "rank_final", "sharpness_init"):
        assert column in beyond.columns, column
    assert set(analysis.figures) == {"sharpness", "loss", "beyond", "beyond_trajectories",
                                     "taylor"}
    assert png_bytes(analysis.figures["sharpness"]).startswith(b"\x89PNG")
    names = [check.name for check in analysis.checks]
    assert "no explosions with scaling" in names
    assert "soft rank higher" in names
    assert sum(name.startswith("progressive sharpening") for name in names) == 2
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    assert analysis.diverged == ""


def test_tasks_are_deterministic_with_readable_keys(tmp_path):
    config = validate_config(eos.EoSConfig, TINY)
    tasks = eos.plan(config)
    assert [t.key for t in tasks] == [
        "eos/mse/lr_factor=0.8", "eos/mse/lr_factor=0.9", "eos/cross_entropy/lr_factor=0.8",
        "eos/cross_entropy/lr_factor=0.9", "beyond/plain/c=0.5", "beyond/plain/c=4",
        "beyond/scaled/c=0.5", "beyond/scaled/c=4"]
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, second = tasks[-1].compute(context), tasks[-1].compute(context)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def _flat_hessian(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian of the MSE loss in the flattened parameters, by autograd (brute force)."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(vector: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            params[name] = vector[start:start + size].reshape(shape)
            start += size
        return mse(torch.func.functional_call(net, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


def test_preconditioned_sharpness_matches_brute_force():
    torch.manual_seed(0)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    net = MLP(5, [6, 7], 3, "abs", bias_std=0.0, seed=3, dtype=torch.float64)
    hessian = _flat_hessian(net, x, y)
    plain = eos.preconditioned_sharpness(net, x, y, "mse", None)
    assert plain == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-6)
    factors = [0.5, 3.0, 11.0]
    scale = torch.cat([torch.full((p.numel(),), f, dtype=torch.float64)
                       for p, f in zip(net.parameters(), factors, strict=True)]).sqrt()
    expected = float(torch.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])[-1])
    assert eos.preconditioned_sharpness(net, x, y, "mse", factors) == pytest.approx(expected,
                                                                                    rel=1e-6)
    assert eos.preconditioned_sharpness(net, x, y, "mse", None) == plain  # net left untouched


def test_normalized_update_factors_match_manual_rms():
    torch.manual_seed(1)
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    net = MLP(4, [5, 6], 2, "relu", bias_std=0.0, seed=2, dtype=torch.float64)
    factors = eos.normalized_update_factors(net, x, y, "mse")
    assert all(p.grad is None for p in net.parameters())
    h, inputs, outputs = x, [], []
    for i, layer in enumerate(net.layers):
        z = layer(h)
        z.retain_grad()
        inputs.append(h)
        outputs.append(z)
        h = net.activation(z) if i < len(net.layers) - 1 else z
    mse(h, y).backward()
    rms = [(a.square().mean().sqrt() * z.grad.square().mean().sqrt()).item()
           for a, z in zip(inputs, outputs, strict=True)]
    np.testing.assert_allclose(factors, [1 / r for r in rms], rtol=1e-9)


def test_loss_explosions_counts_jumps_and_divergence():
    assert eos.loss_explosions(np.array([1.0, 0.5, 6.0, 5.0, 60.0]), 10.0) == 2
    assert eos.loss_explosions(np.array([1.0, 0.9, 9.0]), 10.0) == 0
    assert eos.loss_explosions(np.array([1.0, 20.0, np.inf]), 10.0) == 2


def test_eos_summary_on_a_constructed_run():
    steps = np.arange(101)
    sharp = np.where(steps < 40, 1.0 + steps / 40, 2.0 + 0.1 * np.cos(steps))
    sharp = np.where(steps % 10 == 0, sharp, np.nan)
    loss = 1.0 / (1 + steps) + 0.01 * (steps % 2)
    curves = pd.DataFrame({"step": steps, "loss": loss, "sharpness": sharp, "loss_name": "mse",
                           "lr_factor": 0.5})
    runs = pd.DataFrame([{"loss_name": "mse", "lr_factor": 0.5, "lr": 1.0, "edge": 2.0,
                          "sharpness_init": 1.0, "status": "completed", "steps": 100}])
    row = eos_analysis.eos_summary(curves, runs, 0.5).iloc[0]
    # S = 1 + s/40 first reaches 0.9 * 2 = 1.8 at the measurement s = 40 (S = 2 + 0.1 cos 40).
    assert row["t_edge"] == 40
    assert row["window_start"] == 70
    assert row["sharpening"] == pytest.approx(2.0 + 0.1 * math.cos(40))
    window = (2.0 + 0.1 * np.cos(np.array([70, 80, 90, 100]))) / 2
    assert row["ratio_median"] == pytest.approx(float(np.median(window)))
    assert row["loss_increases"] == 30  # from t_edge = 40 on, every odd step rises by 0.01
    assert row["loss_edge"] == pytest.approx(loss[40])
    assert row["loss_end"] == pytest.approx(loss[100])
    checks = {c.name: c.verdict for c in eos_analysis.eos_checks(
        eos_analysis.eos_summary(curves, runs, 0.5))}
    assert checks == {"progressive sharpening (mse lr=0.5*2/S0)": "pass",
                      "edge of stability (mse lr=0.5*2/S0)": "pass",
                      "non-monotone loss (mse lr=0.5*2/S0)": "pass",
                      "loss still falls (mse lr=0.5*2/S0)": "pass"}


@pytest.mark.parametrize(("values", "key"), [
    ({"nonsense": 1}, "nonsense"), ({"lr_factors": [1.5]}, "lr_factors"),
    ({"lr_factors": []}, "lr_factors"), ({"activation": "nope"}, "activation"),
    ({"beyond_factors": [0.0]}, "beyond_factors"), ({"losses": ["hinge"]}, "losses"),
    ({"width": 0}, "width")])
def test_bad_config_raises_one_line_naming_the_key(values, key):
    with pytest.raises(WidenetError, match=key):
        validate_config(eos.EoSConfig, values)


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the quick preset")
    _, analysis = run_in_memory(get_study("edge-of-stability"), tmp_path)
    failed = [(c.name, c.verdict, c.measured) for c in analysis.checks if c.verdict != "pass"]
    assert not failed


def test_beyond_checks_compare_only_where_both_arms_completed():
    def run(scaled, c, status, explosions, sharp, rank):
        return {"scaled": scaled, "c": c, "status": status, "explosions": explosions,
                "raw_sharpness_final": sharp, "rank_final": rank}
    runs = pd.DataFrame([run(False, 0.5, "completed", 0, 1.0, 1.0),
                         run(False, 2.0, "completed", 0, 1.0, 2.0),
                         run(False, 4.0, "diverged", 1, 1e6, 1.0),
                         run(True, 0.5, "completed", 0, 9.0, 9.0),
                         run(True, 2.0, "completed", 0, 0.1, 2.5),
                         run(True, 4.0, "completed", 2, 0.5, 3.0)])
    checks = {c.name: c for c in eos_analysis.beyond_checks(runs)}
    assert checks["no explosions with scaling"].measured == 2
    assert checks["no explosions with scaling"].verdict == "fail"
    assert checks["sharpness regularized"].measured == pytest.approx(-1.0)  # c = 2 only
    assert checks["soft rank higher"].measured == pytest.approx(0.5)
