"""The built-in monitors, each against a direct computation of its quantity."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

import widenet as wn
from widenet.diagnostics.builtin import (
    FeatureMovementMonitor,
    InfoNuisanceMonitor,
    KernelMonitor,
    LinearizationMonitor,
    MarginMonitor,
    SharpnessMonitor,
    SoftRankMonitor,
    TaylorMonitor,
    WeightMovementMonitor,
)
from widenet.diagnostics.features import hidden_features, soft_ranks
from widenet.diagnostics.kernel_motion import (
    information_space,
    kernel_target_alignment,
    residual_projections,
)
from widenet.diagnostics.movement import weight_movement
from widenet.diagnostics.sharpness import sharpness
from widenet.dynamics.checkpoint import Checkpoint, fingerprint
from widenet.dynamics.losses import mse
from widenet.dynamics.optim import LayerPowerScaling, NormalizedUpdateScaling, Optimizer


def regression(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, torch.sin(x[:, :1])


def net() -> wn.MLP:
    return wn.MLP(3, [64, 64], 1, "abs", bias_std=0.1, seed=2, dtype=torch.float64)


def test_movement_kernel_and_rank_monitors_match_direct_computations() -> None:
    x, y = regression()
    model, initial = net(), net()
    monitors = [WeightMovementMonitor(), FeatureMovementMonitor(), KernelMonitor(size=20),
                SoftRankMonitor(layers="all")]
    history = wn.train(model, x, y, lr=0.3, steps=10, log_every=10, monitors=monitors
                       ).measured("weight_movement", "feature_movement", "ntk", "soft_ranks")
    first, last = history.iloc[0], history.iloc[-1]
    assert first["weight_movement"] == 0.0
    assert first["ntk_movement"] == 0.0
    assert last["weight_movement"] == pytest.approx(weight_movement(model, initial).relative)
    before, after = hidden_features(initial, x[:256]), hidden_features(model, x[:256])
    for layer in (1, 2):
        change = (after[layer - 1] - before[layer - 1]).norm() / before[layer - 1].norm()
        assert last[f"feature_movement/{layer}"] == pytest.approx(float(change))
        assert last[f"stable_rank/{layer}"] == pytest.approx(soft_ranks(after[layer - 1])
                                                             .stable_rank)
    kernel0, kernel = (wn.empirical_ntk(m, x[:20]).ntk for m in (initial, model))
    assert last["ntk_movement"] == pytest.approx(float((kernel - kernel0).norm() / kernel0.norm()))
    assert last["ntk_alignment"] == pytest.approx(kernel_target_alignment(kernel, y[:20]))
    assert last["ntk_lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(kernel)[-1]))


def test_linearization_error_against_a_separately_trained_linear_model() -> None:
    x, y = regression()
    model = net()
    linear = wn.linearize(model)
    with torch.no_grad():
        f0 = model(x)
    history = wn.train(model, x, y, lr=0.3, steps=20, log_every=10,
                       monitors=[LinearizationMonitor()]).measured("linearization")
    wn.train(linear, x, y, lr=0.3, steps=20)
    with torch.no_grad():
        expected = (model(x) - linear(x)).norm() / (model(x) - f0).norm()
    assert history["linearization_error"].iloc[-1] == pytest.approx(float(expected), rel=1e-10)
    assert history["linearization_error"].iloc[0] == 0.0
    with pytest.raises(wn.WidenetError, match="full-batch GD"):
        wn.train(net(), x, y, lr=0.1, steps=2, optimizer=Optimizer("sgd", batch_size=10),
                 monitors=[LinearizationMonitor()])


def test_info_nuisance_monitor() -> None:
    x, y = regression()
    model = net()
    kernel0 = wn.empirical_ntk(model, x).ntk
    with torch.no_grad():
        r0 = model(x) - y
    history = wn.train(model, x, y, lr=0.3, steps=30, log_every=30,
                       monitors=[InfoNuisanceMonitor(top=4)]).measured("info_nuisance")
    space = information_space(kernel0, top=4)
    with torch.no_grad():
        expected = residual_projections(space, model(x) - y, r0)
    last = history.iloc[-1]
    assert last["residual_information"] == pytest.approx(expected.information)
    assert last["residual_nuisance"] == pytest.approx(expected.nuisance)
    first = history.iloc[0]
    assert first["residual_information"] ** 2 + first["residual_nuisance"] ** 2 == pytest.approx(1)
    assert last["residual_information"] < first["residual_information"]  # the fast directions


def separable(even: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Points with a gap around a linear (or, for even nets, |x1| = |x2|) decision boundary."""
    x = torch.randn(60, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    score = x[:, 0].abs() - x[:, 1].abs() if even else x[:, 0] - 0.5 * x[:, 1]
    keep = score.abs() > 0.3
    return x[keep], torch.sign(score[keep])


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("loss", ["exponential", "logistic"])
def test_smoothed_margin_is_non_decreasing_after_separation(activation: str, loss: str) -> None:
    """Lyu & Li: once the data are separated, gradient flow increases the smoothed margin of a
    homogeneous net; small-step GD (lr 0.05) on a bias-free two-layer net follows it."""
    x, y = separable(even=activation == "abs")
    model = wn.MLP(2, [32], 1, activation, seed=1, dtype=torch.float64)
    history = wn.train(model, x, y, lr=0.05, steps=1500, log_every=10, loss=loss,
                       monitors=[MarginMonitor()]).measurements["margins"]
    separated = history[history["normalized_margin"] > 0]
    assert len(separated) > 50
    smoothed = separated[f"smoothed_margin_{loss}"]
    assert (smoothed.diff().dropna() >= 0).all()
    assert history["parameter_norm"].iloc[-1] > history["parameter_norm"].iloc[0]


def test_margin_monitor_refuses_non_homogeneous_nets() -> None:
    x, y = separable(even=False)
    with pytest.raises(wn.WidenetError, match="homogeneous"):
        wn.train(wn.MLP(2, [8], 1, "tanh"), x, y, lr=0.1, steps=1, loss="logistic",
                 monitors=[MarginMonitor()])


def test_resume_with_built_in_monitors(tmp_path) -> None:
    x, y = regression()
    monitors = lambda: [WeightMovementMonitor(), LinearizationMonitor(),  # noqa: E731
                        KernelMonitor(size=10)]
    kwargs = {"lr": 0.3, "steps": 20, "log_every": 5}
    whole = net()
    names = ("weight_movement", "linearization", "ntk")
    expected = wn.train(whole, x, y, monitors=monitors(), **kwargs).measured(*names, how="left")
    partial = net()
    wn.train(partial, x, y, monitors=monitors(), checkpoint=Checkpoint(tmp_path / "c.pt", 10),
             **{**kwargs, "steps": 10})
    resumed = copy.deepcopy(partial)
    history = wn.train(resumed, x, y, monitors=monitors(),
                       checkpoint=Checkpoint(tmp_path / "c.pt", 10, resume=True),
                       **kwargs).measured(*names, how="left")
    assert torch.equal(whole.layers[0].weight, resumed.layers[0].weight)
    assert history.equals(expected)


def test_a_checkpoint_names_the_built_in_monitors_by_their_public_module() -> None:
    """A run's fingerprint records each monitor's class: the built-in ones as
    widenet.diagnostics.builtin's, as when they were defined there, so that the runs
    checkpointed then still resume (they are defined by concept in other modules now)."""
    monitors = [WeightMovementMonitor(), SharpnessMonitor(every=5), MarginMonitor(),
                KernelMonitor(every=3)]
    recorded = fingerprint(net(), {}, "mse", {}, {}, monitors)["monitors"]
    assert recorded == ["widenet.diagnostics.builtin.WeightMovementMonitor(every=None)",
                        "widenet.diagnostics.builtin.SharpnessMonitor(every=5)",
                        "widenet.diagnostics.builtin.MarginMonitor(every=None)",
                        "widenet.diagnostics.builtin.KernelMonitor(every=3)"]


def test_sharpness_under_adam_reports_no_gd_threshold() -> None:
    """2/lr bounds the sharpness under GD only; under Adam the threshold is NaN, with a warning
    naming what applies instead (the preconditioned sharpness); SGD with momentum keeps
    (2 + 2 beta) / lr."""
    x, y = regression()
    model = wn.MLP(3, [16], 1, "tanh", seed=0, dtype=torch.float64)
    with pytest.warns(UserWarning, match="preconditioned sharpness") as caught:
        sharp = wn.train(model, x, y, lr=0.01, steps=4, log_every=2, optimizer="adam",
                         monitors=[SharpnessMonitor()]).measurements["sharpness"]
    assert len(caught) == 1  # once per monitor, not per measurement
    assert sharp["stability_threshold"].isna().all()
    assert (sharp["sharpness"] > 0).all()
    sharp = wn.train(model, x, y, steps=2, monitors=[SharpnessMonitor()],
                     optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.5)
                     ).measurements["sharpness"]
    assert sharp["stability_threshold"].tolist() == pytest.approx([30.0, 30.0])


def test_bad_monitor_arguments() -> None:
    with pytest.raises(wn.WidenetError, match="exactly one of cutoff"):
        InfoNuisanceMonitor()
    with pytest.raises(wn.WidenetError, match="'last' or 'all'"):
        SoftRankMonitor(layers="first")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: FeatureMovementMonitor(probe=torch.zeros(3)), r"probe must have shape \(n, d\)"),
    (lambda: SoftRankMonitor(probe=torch.full((4, 3), float("nan"))), "probe contains NaN"),
    (lambda: FeatureMovementMonitor(probe=torch.zeros(4, 3, dtype=torch.int64)),
     "floating-point"),
    (lambda: KernelMonitor(probe=(torch.zeros(4, 3),)), r"pair \(x, y\) .* tuple of 1"),
    (lambda: KernelMonitor(probe=torch.zeros(4, 3)), r"pair \(x, y\) .* got Tensor"),
    (lambda: KernelMonitor(probe=(torch.zeros(0, 3), torch.zeros(0))), "probe x is empty"),
])
def test_bad_probes_are_refused_when_the_monitor_is_made(make, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        make()


@pytest.mark.parametrize("monitor", [
    lambda probe: FeatureMovementMonitor(probe=probe),
    lambda probe: SoftRankMonitor(probe=probe),
    lambda probe: KernelMonitor(probe=(probe, torch.zeros(4, 1, dtype=torch.float64)))])
def test_probe_points_of_another_dimension_are_refused_before_training(monitor) -> None:
    x, y = regression()
    model = net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(wn.WidenetError, match=r"probe points have shape \(5,\) but the "
                                              r"training points \(3,\)"):
        wn.train(model, x, y, lr=0.1, steps=3, monitors=[monitor(torch.zeros(4, 5))])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_monitors_with_normalized_update_scaling_and_classification() -> None:
    """Gradient-scaling hooks record only the training pass (the NTK monitor's passes run
    through vmap); class labels are one-hot for the alignment; (n, 1) labels for margins."""
    x, _ = separable(even=False)
    labels = (x[:, 0] > 0).long()
    model = wn.MLP(2, [16], 2, "relu", seed=0, dtype=torch.float64)
    history = wn.train(model, x, labels, lr=0.05, steps=4, log_every=2, loss="cross_entropy",
                       optimizer=Optimizer(gradient_scaling=NormalizedUpdateScaling()),
                       monitors=[KernelMonitor(), MarginMonitor()]).measured("ntk", "margins")
    one_hot = torch.nn.functional.one_hot(labels).double()
    kernel = wn.empirical_ntk(model, x).ntk
    assert history["ntk_alignment"].iloc[-1] == pytest.approx(
        kernel_target_alignment(kernel, one_hot))
    single = wn.MLP(2, [16], 1, "relu", seed=0, dtype=torch.float64)
    signs = (2.0 * labels - 1).double().unsqueeze(1)
    history = wn.train(single, x, signs, lr=0.05, steps=2, loss="logistic",
                       monitors=[MarginMonitor()]).measurements["margins"]
    assert "normalized_margin" in history
    with pytest.raises(wn.WidenetError, match="regression targets"):
        wn.train(model, x, labels, lr=0.05, steps=1, loss="cross_entropy",
                 monitors=[InfoNuisanceMonitor(top=2)])


def test_linearization_monitor_checkpoints_tanh_nets(tmp_path) -> None:
    x, y = regression()
    model = wn.MLP(3, [16], 1, "tanh", seed=0, dtype=torch.float64)
    kwargs = {"lr": 0.2, "steps": 10, "log_every": 5}
    expected = wn.train(copy.deepcopy(model), x, y, monitors=[LinearizationMonitor()],
                        **kwargs).measured("linearization", how="left")
    wn.train(copy.deepcopy(model), x, y, monitors=[LinearizationMonitor()],
             checkpoint=Checkpoint(tmp_path / "t.pt", 5), **{**kwargs, "steps": 5})
    resumed = wn.train(copy.deepcopy(model), x, y, monitors=[LinearizationMonitor()],
                       checkpoint=Checkpoint(tmp_path / "t.pt", 5, resume=True),
                       **kwargs).measured("linearization", how="left")
    assert resumed.equals(expected)
    with pytest.raises(wn.WidenetError, match="plain full-batch GD"):
        wn.train(model, x, y, lr=0.1, steps=1,
                 optimizer=Optimizer(gradient_scaling=LayerPowerScaling(1.0)),
                 monitors=[LinearizationMonitor()])


def test_sharpness_and_taylor_monitors() -> None:
    """Sharpness beside 2/lr, equal to a cold one-shot computation; the Taylor monitor's
    actual change is the next row's loss minus this one's (GD, one step per row)."""
    x, y = regression()
    model = wn.MLP(3, [16], 1, "tanh", seed=0, dtype=torch.float64)
    history = wn.train(model, x, y, lr=0.25, steps=6, log_every=1,
                       monitors=[SharpnessMonitor(k=2, tol=1e-8), TaylorMonitor()]
                       ).measured("sharpness", "taylor", how="left")
    assert (history["stability_threshold"] == 8.0).all()
    assert (history["sharpness"] >= history["sharpness_2"]).all()
    cold = sharpness(model, mse, x, y, tol=1e-8).value
    assert history["sharpness"].iloc[-1] == pytest.approx(cold, rel=1e-6)
    change = history["loss"].diff().shift(-1).iloc[:-1].to_numpy()
    assert torch.allclose(torch.tensor(history["taylor_actual"].iloc[:-1].to_numpy()),
                          torch.tensor(change), rtol=1e-9)
    c = history[["taylor_c1", "taylor_c2", "taylor_c3"]].iloc[:-1].sum(axis=1).to_numpy()
    assert torch.allclose(torch.tensor(c), torch.tensor(change), rtol=1e-3)


def test_taylor_monitor_with_a_parameter_the_forward_pass_does_not_use() -> None:
    """A trainable parameter without a gradient was missing from the direction, and the
    monitor raised at the first step; it does not move, so its direction is zero."""

    class WithSpare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = wn.MLP(3, [16], 1, "tanh", seed=0, dtype=torch.float64)
            self.spare = torch.nn.Linear(2, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    x, y = regression()
    history = wn.train(WithSpare(), x, y, lr=0.25, steps=3, log_every=1,
                       monitors=[TaylorMonitor()]).measured("taylor", how="left")
    change = history["loss"].diff().shift(-1).iloc[:-1].to_numpy()
    assert torch.allclose(torch.tensor(history["taylor_actual"].iloc[:-1].to_numpy()),
                          torch.tensor(change), rtol=1e-9)


@pytest.mark.parametrize("monitor", [SharpnessMonitor, TaylorMonitor])
def test_loss_monitors_refuse_a_model_trained_with_dropout_before_training(monitor) -> None:
    """The loss of a model with dropout in training mode is random: the diagnostics refused it
    at the first measurement, advising model.eval(), which before train() would turn dropout off
    for the training itself."""
    x, y = regression()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(16, 1)).double()
    initial = copy.deepcopy(model.state_dict())
    with pytest.raises(wn.WidenetError, match=rf"^{monitor.__name__}: module '2' \(Dropout\) is "
                       r"in training mode.*leave the monitor out and measure the trained model "
                       r"in eval mode"):
        wn.train(model, x, y, lr=0.1, steps=3, monitors=[monitor()])
    assert all(torch.equal(initial[name], t) for name, t in model.state_dict().items())
    model.eval()  # dropout off: measured
    assert wn.train(model, x, y, lr=0.1, steps=3, monitors=[monitor()]).status == "completed"


class _Chain(torch.nn.Module):
    """f(x) = a b x, a = b = 1 at the start: L = (a b)^2 / 2 for x = 1, y = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.ones(())), torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * self.b * x


def test_taylor_monitor_records_nan_at_the_step_where_a_run_diverges() -> None:
    """GD at lr 1e7 takes a = b to about -1e7 in one step: the loss, 5e27, is finite in float32
    and the loop measures that step (it diverged), but g'(0) = -||grad L||^2 (about 2e42)
    overflows. The monitor raised and ended the run (the edge-of-stability study's c = 8 runs);
    before the loss diagnostics refused non-finite derivatives it recorded NaN."""
    x, y = torch.ones(1, 1), torch.zeros(1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the row says it; the run's status says it diverged
        result = wn.train(_Chain(), x, y, lr=1e7, steps=5, log_every=1,
                          monitors=[TaylorMonitor()], progress=False)
    assert (result.status, result.steps) == ("diverged", 1)
    rows = result.measurements["taylor"].set_index("step")
    assert rows.loc[1].isna().all()
    # Step 0, from a = b = 1 along G = grad L = (1, 1): g(s) = (1 - s)^4 / 2.
    assert rows.loc[0, "taylor_c1"] == pytest.approx(-2.0 * 1e7, rel=1e-6)


def test_taylor_monitor_records_nan_at_a_step_whose_gradient_is_not_finite() -> None:
    """A NaN gradient at a finite loss ends the run before the step, and the loop measures that
    step with every monitor: the Taylor monitor refused the NaN direction and the run raised
    instead of ending as diverged."""
    x, y = regression()
    model = wn.MLP(3, [16], 1, "tanh", seed=0, dtype=torch.float64)
    passes = []

    def nan_at_the_third_pass(gradient: torch.Tensor) -> torch.Tensor:
        passes.append(None)
        return gradient * math.nan if len(passes) == 3 else gradient
    model.layers[0].weight.register_hook(nan_at_the_third_pass)
    result = wn.train(model, x, y, lr=0.1, steps=6, log_every=5, monitors=[TaylorMonitor()])
    assert (result.status, result.steps) == ("diverged", 2)
    rows = result.measurements["taylor"].set_index("step")
    assert list(rows.index) == [0, 2]
    assert rows.loc[2].isna().all()
    assert not rows.loc[0].isna().any()
