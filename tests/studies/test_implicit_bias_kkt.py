"""The implicit-bias study's directional-convergence and KKT measurements against hand
computations, and its three convergence checks on synthetic tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from widenet import MLP
from widenet.checks import Check
from widenet.dynamics.losses import exponential
from widenet.dynamics.monitor import RunState
from widenet.errors import WidenetError
from widenet.studies.implicit_bias.analysis import _checks, checkpoint_statistics, summarize
from widenet.studies.implicit_bias.kkt import (
    DirectionMonitor,
    checkpoint_steps,
    gradient_alignment,
    kkt_residual,
    margin_jacobian,
)

X = torch.tensor([[2.0, 1.0], [-1.0, 1.0], [3.0, 0.5]], dtype=torch.float64)
Y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)


def linear_net(first: torch.Tensor, second: torch.Tensor) -> MLP:
    """f(x) = c v^T W x, a one-hidden-layer linear net (degree 2) with W and v given."""
    net = MLP(2, [first.shape[0]], 1, "identity", weight_std=1.0, dtype=torch.float64)
    with torch.no_grad():
        net.layers[0].weight.copy_(first)
        net.layers[1].weight.copy_(second)
    return net


def kkt_net() -> MLP:
    """W = u a^T, v = u with a the max-margin direction of X (brute force over the circle):
    balanced and aligned, a KKT point of min ||theta||^2 s.t. y_i f(x_i) >= 1 up to scale."""
    angles = torch.linspace(0, 2 * math.pi, 400001, dtype=torch.float64)
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)
    direction = directions[(Y[:, None] * (X @ directions.T)).min(dim=0).values.argmax()]
    u = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64)
    return linear_net(torch.outer(u, direction), u[None, :])


def test_margin_jacobian_against_finite_differences():
    net = MLP(2, [4], 1, "relu", seed=3, dtype=torch.float64)
    margins, jacobian = margin_jacobian(net, X, Y)
    np.testing.assert_allclose(margins, Y * net(X).reshape(-1).detach(), rtol=1e-12)
    parameter = net.layers[0].weight
    with torch.no_grad():
        parameter[1, 0] += 1e-6
        plus = Y * net(X).reshape(-1)
        parameter[1, 0] -= 2e-6
        minus = Y * net(X).reshape(-1)
    np.testing.assert_allclose(jacobian[:, 2], (plus - minus) / 2e-6, rtol=1e-6)


def test_kkt_residual_vanishes_at_a_kkt_point_and_is_scale_free():
    stationarity, slackness = kkt_residual(kkt_net(), X, Y, degree=2)
    assert stationarity < 1e-4
    assert slackness == pytest.approx(0.0, abs=1e-3)
    net = MLP(2, [3], 1, "identity", seed=0, dtype=torch.float64)
    with torch.no_grad():  # separate the data first: a random W, v with v^T W = a^T
        net.layers[0].weight.add_(torch.outer(torch.ones(3, dtype=torch.float64), kkt_net()
                                              .layers[0].weight[1] * 5))
    with torch.no_grad():
        assert float((Y * net(X).reshape(-1)).min()) > 0  # separated: the residual is defined
    away, _ = kkt_residual(net, X, Y, degree=2)
    assert away > 1e-3
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(7.0)
    assert kkt_residual(net, X, Y, degree=2)[0] == pytest.approx(away, rel=1e-8)


def test_kkt_residual_is_nan_before_separation():
    net = linear_net(-kkt_net().layers[0].weight, kkt_net().layers[1].weight)
    assert all(math.isnan(value) for value in kkt_residual(net, X, Y, degree=2))


def test_gradient_alignment_by_hand():
    """f = c v^T W x: -grad of the mean exponential loss is (1/n) sum e^-q_i grad q_i, with
    grad_W q_i = c y_i v x_i^T and grad_v q_i = c y_i W x_i."""
    first = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=torch.float64)
    second = torch.tensor([[0.7, 0.4]], dtype=torch.float64)
    net = linear_net(first, second)
    c = float(net(X[:1]).detach().reshape(()) / (second @ first @ X[0]))  # the layers' multipliers
    q = Y * c * (second @ first @ X.T).reshape(-1)
    weights = torch.exp(-q) * Y * c / 3
    grad_w = -(second.T * (weights @ X))  # d loss / d W
    grad_v = -(weights @ (X @ first.T))
    theta = torch.cat([first.reshape(-1), second.reshape(-1)])
    gradient = torch.cat([grad_w.reshape(-1), grad_v.reshape(-1)])
    expected = float(-theta @ gradient / (theta.norm() * gradient.norm()))
    assert gradient_alignment(net, X, Y[:, None], exponential) == pytest.approx(expected,
                                                                                 rel=1e-10)


def test_direction_monitor_measures_only_at_checkpoints():
    net = MLP(2, [3], 1, "relu", seed=1, dtype=torch.float64)
    monitor = DirectionMonitor([10, 20], Y, degree=2)

    def state(step: int) -> RunState:
        return RunState(model=net, x=X, y=Y[:, None], loss_fn=exponential, lr=0.1, step=step)

    assert monitor.measure(state(5)) == {}
    first = monitor.measure(state(10))
    assert math.isnan(first["direction_change"])
    before = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    with torch.no_grad():
        net.layers[1].weight.mul_(-1.0)
    after = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    second = monitor.measure(state(20))
    expected = (after / after.norm() - before / before.norm()).norm()
    assert second["direction_change"] == pytest.approx(float(expected), rel=1e-12)
    assert -1 <= second["gradient_alignment"] <= 1


def test_checkpoint_steps():
    assert checkpoint_steps(300, 3000, 6, 5) == [300, 475, 755, 1195, 1895, 3000]
    # 2, 3.9, 7.7, 15.2, 30 rounded to the logged steps 10, 20, 30, repeats dropped
    assert checkpoint_steps(2, 30, 5, 10) == [10, 20, 30]
    with pytest.raises(WidenetError, match="count >= 2"):
        checkpoint_steps(300, 3000, 1, 5)


def _checkpoints(decays: list[float]) -> pd.DataFrame:
    """Three synthetic runs whose direction change, alignment gap and KKT residual all fall by
    the factor 10^decay over four checkpoints."""
    rows = []
    for seed, decay in enumerate(decays):
        for k, step in enumerate((100, 200, 400, 800)):
            factor = 10 ** (decay * k / 3)
            rows.append({"activation": "relu", "depth": 1, "degree": 2, "seed": seed,
                         "step": step, "direction_change": math.nan if k == 0 else 0.1 * factor
                         / 10 ** (decay / 3), "gradient_alignment": 1 - 0.05 * factor,
                         "kkt_stationarity": 0.2 * factor, "kkt_slackness": 3.0 * factor})
    return pd.DataFrame(rows)


def _study_checks(stats: pd.DataFrame) -> dict[str, Check]:
    """The study's checks, by name without the group tag, on completed runs whose per-run
    statistics other than the checkpoints' are placeholders."""
    runs = stats.assign(status="completed", **{name: 1.0 for name in (
        "decrease_fraction", "norm_slope", "norm_exponent", "margin_gain", "rich_over_lazy",
        "final_margin", "lazy_margin", "final_tangent_margin", "margin_at_separation")})
    return {c.name.split(" (")[0]: c for c in _checks(next(summarize(runs).itertuples()))}


@pytest.mark.parametrize(("decays", "verdict"), [([-1.0, -1.2, -0.8], "pass"),
                                                 ([1.0, 1.2, 0.8], "fail"),
                                                 ([-1.0, 1.1, 0.1], "inconclusive")])
def test_convergence_checks_on_synthetic_tables(decays, verdict):
    stats = checkpoint_statistics(_checkpoints(decays))
    np.testing.assert_allclose(stats["kkt_decay"], decays, rtol=1e-10)
    np.testing.assert_allclose(stats["alignment_decay"], decays, rtol=1e-10)
    np.testing.assert_allclose(stats["direction_decay"], [d * 2 / 3 for d in decays],
                               rtol=1e-10)
    checks = _study_checks(stats)
    new = [checks[name] for name in (
        "direction converges", "weights align with -gradient", "KKT residual shrinks")]
    assert {c.verdict for c in new} == {verdict}
    # a failure whose direction does not converge is not the documented finding
    assert not new[1].note.startswith("finding:")


def _alignment_check_of(checkpoints: pd.DataFrame) -> Check:
    return _study_checks(checkpoint_statistics(checkpoints))["weights align with -gradient"]


def test_the_alignment_finding_needs_what_it_says_measured():
    """The finding ("the alignment is a limit not reached yet") is attached to a failed
    alignment check only while the direction converges and theta points along -grad L
    (cos > 0); a falling alignment with a negative cos (a sign error) stays a plain fail."""
    converging = _checkpoints([-1.0, -1.2, -0.8])
    gap = 0.05 * 10 ** (converging["step"].rank(method="dense").to_numpy() / 4)  # 1 - cos grows
    finding = _alignment_check_of(converging.assign(gradient_alignment=1 - gap))
    assert finding.verdict == "fail"
    assert finding.note.startswith("finding:")
    plain = _alignment_check_of(converging.assign(gradient_alignment=-gap))  # cos < 0
    assert plain.verdict == "fail"
    assert not plain.note.startswith("finding:")


def test_one_separated_checkpoint_is_no_evidence_on_the_kkt_residual():
    """With a single checkpoint where the data are separated the KKT decay is undefined: the
    check is inconclusive, never a pass at 0 +- 0."""
    table = _checkpoints([1.0, 1.2, 0.8])
    table.loc[table["step"] < 800, ["kkt_stationarity", "kkt_slackness"]] = math.nan
    stats = checkpoint_statistics(table)
    assert stats["kkt_decay"].isna().all()
    assert _study_checks(stats)["KKT residual shrinks"].verdict == "inconclusive"


def test_kkt_decay_starts_at_the_first_separated_checkpoint():
    """Before separation the KKT residual is NaN: the decay is measured from the first
    checkpoint where it exists, not reported NaN."""
    table = _checkpoints([-1.0, -1.2, -0.8])
    table.loc[table["step"] == 100, ["kkt_stationarity", "kkt_slackness"]] = math.nan
    stats = checkpoint_statistics(table)
    np.testing.assert_allclose(stats["kkt_decay"], [d * 2 / 3 for d in (-1.0, -1.2, -0.8)],
                               rtol=1e-10)
