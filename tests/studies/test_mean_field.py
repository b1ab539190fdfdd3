"""The mean-field study: end to end on tiny sizes, its measurements against independent
computations (brute-force optimal transport, the particle formula, exact symmetries of the
mean-field scaling), and its config errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FULL
from tests.studies.conftest import run_in_memory
from widenet import train
from widenet.checks import VERDICTS
from widenet.errors import WidenetError
from widenet.figures import png_bytes
from widenet.studies import StudyContext, get_study
from widenet.studies.common.config import validate_config
from widenet.studies.mean_field.analysis import iid_transport_slope, neuron_checks, scale_checks
from widenet.studies.mean_field.config import MeanFieldConfig
from widenet.studies.mean_field.measure import (
    compute_task,
    neuron_movement,
    particle_table,
    particles,
    random_projections,
    sliced_wasserstein,
    teacher_angles,
    two_layer_net,
    with_bias_coordinate,
)
from widenet.studies.mean_field.regimes import symmetrized

STUDY = get_study("mean-field")
TINY = {"widths": [8, 16, 32], "particle_width": 16, "seeds": 2, "steps": 20, "n": 12,
        "n_test": 16, "projections": 16, "neuron_counts": [2, 4, 8], "neuron_steps": 20,
        "scales": [0.1, 10.0], "scale_width": 8, "scale_dim": 3, "scale_n": 12,
        "scale_steps": 20}
MAIN_CHECKS = ["movement slope (mean-field)", "movement slope (ntk)",
               "transport ratio slope (mean-field)"]
NEW_CHECKS = ["final loss falls with the number of neurons (mean-field)",
              "loss near 0 at m = 8 (mean-field)", "large tau is lazy (tau = 10 vs 0.1)",
              "rich generalizes better (tau = 0.1 vs 10)"]


def _inputs(n: int = 10, dim: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator, dtype=torch.float64)


def test_tiny_run_end_to_end(tmp_path):
    config, analysis = run_in_memory(STUDY, tmp_path, **TINY)
    assert [task.key for task in STUDY.plan(config)] == [
        *(f"{scaling}/seed={s}" for scaling in ("mean-field", "ntk") for s in (0, 1)),
        "neurons/seed=0", "neurons/seed=1", "scales/seed=0", "scales/seed=1"]
    summary = analysis.tables["summary"]
    assert {"scaling", "width", "runs", "movement", "movement_se", "test_loss", "train_loss",
            "initial_test_loss", "zero_test_loss"} <= set(summary.columns)
    assert len(summary) == 2 * 3
    transport = analysis.tables["transport_summary"]
    assert {"scaling", "width", "stage", "distance", "distance_se"} <= set(transport.columns)
    assert set(transport["width"]) == {8, 16}
    slopes = analysis.tables["slopes"]
    assert set(slopes["measure"]) == {"movement", "transport_initial", "transport_trained",
                                      "transport_ratio"}
    assert set(analysis.figures) == {"movement", "particles", "transport", "test_loss",
                                     "neurons", "scales"}
    assert list(analysis.tables["neurons"]["width"]) == [2, 4, 8] * 2
    assert list(analysis.tables["scales"]["scale"]) == [0.1, 10.0] * 2
    assert [check.name for check in analysis.checks] == [
        *MAIN_CHECKS, "test loss converged in width (mean-field, m=16 vs 32)", *NEW_CHECKS]
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    assert analysis.diverged == ""


def test_tasks_are_deterministic_and_share_the_initial_particles(tmp_path):
    config = validate_config(MeanFieldConfig, TINY)
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first, second = (compute_task(config, "mean-field", 1, context) for _ in range(2))
    for name in ("runs", "transport", "particles"):
        pd.testing.assert_frame_equal(first[name], second[name])
    lazy = compute_task(config, "ntk", 1, context)
    initial = [table[table["stage"] == "initial"].drop(columns="scaling").reset_index(drop=True)
               for table in (first["particles"], lazy["particles"])]
    pd.testing.assert_frame_equal(*initial)
    assert not np.allclose(first["runs"]["movement"], lazy["runs"]["movement"])


@pytest.mark.parametrize("scaling", ["mean-field", "ntk"])
def test_particles_give_the_network_function(scaling):
    """f(x) = (sigma / s_m) sum_i c_i relu(sigma (a_i . x + b_i) / sqrt(d + 1)), sigma^2 = 2,
    s_m = m or sqrt(m), recomputed in numpy from the particle matrix."""
    dim, width = 3, 40
    net = two_layer_net(scaling, dim, width, seed=4)
    x = _inputs(7, dim)
    w = particles(net).numpy()
    a, b, c = w[:, :dim], w[:, dim], w[:, dim + 1]
    sigma = math.sqrt(2.0)
    scale = width if scaling == "mean-field" else math.sqrt(width)
    expected = (sigma / scale) * np.maximum(sigma * (x.numpy() @ a.T + b) / math.sqrt(dim + 1),
                                            0.0) @ c
    with torch.no_grad():
        output = net(with_bias_coordinate(x)).reshape(-1).numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-14)


def _duplicated(net, scaling: str, dim: int, width: int):
    """A net of width 2m whose particles are those of ``net``, each twice."""
    double = two_layer_net(scaling, dim, 2 * width, seed=0)
    with torch.no_grad():
        double.layers[0].weight.copy_(net.layers[0].weight.repeat(2, 1))
        double.layers[1].weight.copy_(net.layers[1].weight.repeat(1, 2))
    return double


def test_mean_field_dynamics_depend_only_on_the_particle_measure():
    """Exact symmetry of the 1/m scaling with lr * m: duplicating every particle leaves f and
    every particle's GD trajectory unchanged; under the 1/sqrt(m) scaling it does not."""
    dim, width = 2, 12
    x, y = with_bias_coordinate(_inputs(10, dim)), _inputs(10, 1, seed=1)
    for scaling, invariant in (("mean-field", True), ("ntk", False)):
        net = two_layer_net(scaling, dim, width, seed=3)
        double = _duplicated(net, scaling, dim, width)
        for model in (net, double):
            assert train(model, x, y, lr=0.3, steps=25, progress=False).status == "completed"
        moved = particles(net)
        same = torch.allclose(particles(double), torch.cat([moved, moved]), rtol=1e-10,
                              atol=1e-12)
        assert same == invariant


def test_balance_is_conserved_by_the_flow():
    """ReLU neurons are 2-homogeneous: gradient flow conserves c_i^2 - ||(a_i, b_i)||^2 per
    particle. GD drifts by O(eta) at a fixed time eta * steps, so halving eta halves it."""
    dim, width = 2, 32
    x, y = with_bias_coordinate(_inputs(16, dim)), _inputs(16, 1, seed=2)

    def drift(lr: float, steps: int) -> float:
        net = two_layer_net("mean-field", dim, width, seed=5)
        before = particles(net)
        assert train(net, x, y, lr=lr, steps=steps, progress=False).status == "completed"
        after = particles(net)
        balance = [w[:, -1] ** 2 - w[:, :-1].square().sum(dim=1) for w in (before, after)]
        assert neuron_movement(before, after) > 0.05  # the particles did move
        return float((balance[1] - balance[0]).abs().max())

    coarse, fine = drift(0.2, 40), drift(0.1, 80)
    assert coarse / fine == pytest.approx(2.0, rel=0.1)


def test_neuron_movement_is_the_mean_row_distance():
    initial = torch.zeros(3, 4, dtype=torch.float64)
    final = torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 0, 1.0], [0, 0, 0, 0]], dtype=torch.float64)
    assert neuron_movement(initial, final) == pytest.approx((5.0 + 1.0 + 0.0) / 3)


def _sorted_matching(source: np.ndarray, target: np.ndarray, projections: np.ndarray) -> float:
    """Brute-force sliced W_2 for |target| = k |source|: in 1-D the optimal plan matches sorted
    points, and the quantile function of the smaller measure repeats each point k times."""
    repeat = len(target) // len(source)
    squares = []
    for theta in projections.T:
        u = np.repeat(np.sort(source @ theta), repeat)
        v = np.sort(target @ theta)
        squares.append(np.mean((u - v) ** 2))
    return math.sqrt(np.mean(squares))


def test_sliced_wasserstein_against_sorted_matching():
    rng = np.random.default_rng(0)
    source, target = rng.standard_normal((20, 4)), rng.standard_normal((60, 4)) + 0.3
    projections = random_projections(4, 50, seed=1)
    assert np.allclose(np.linalg.norm(projections, axis=0), 1.0)
    measured = sliced_wasserstein(torch.from_numpy(source), torch.from_numpy(target),
                                  projections)
    assert measured == pytest.approx(_sorted_matching(source, target, projections), rel=1e-10)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    translated = sliced_wasserstein(torch.from_numpy(source), torch.from_numpy(source + shift),
                                    projections)
    assert translated == pytest.approx(math.sqrt(np.mean((shift @ projections) ** 2)),
                                       rel=1e-10)
    assert sliced_wasserstein(torch.from_numpy(source), torch.from_numpy(source),
                              projections) == pytest.approx(0.0, abs=1e-12)


def test_iid_transport_slope():
    assert iid_transport_slope([64, 256, 1024, 2**40]) == pytest.approx(-0.5, abs=1e-9)
    default = iid_transport_slope([64, 128, 256, 512, 1024, 2048, 4096])
    widths = np.array([64, 128, 256, 512, 1024, 2048.0])
    law = np.log(np.sqrt(1 / widths + 1 / 4096))
    assert default == pytest.approx(np.polyfit(np.log(widths), law, 1)[0], abs=1e-12)
    assert -0.5 < default < -0.4


SYNTHETIC_WIDTHS = [64, 256, 1024, 4096]


def _synthetic_tables(trained_distance, finite_seeds: int = 4) -> dict[str, pd.DataFrame]:
    """Tables of 4 seeds shaped like compute_task's: movement flat (mean field) and ~ m^-1/2
    (NTK), test losses flat, initial distances sqrt(1/m + 1/M) times per-seed noise, trained
    distances ``trained_distance(initial)``; seeds from ``finite_seeds`` on diverged."""
    rng = np.random.default_rng(0)
    widest = SYNTHETIC_WIDTHS[-1]
    runs, transport, cloud = [], [], []
    for scaling in ("mean-field", "ntk"):
        for seed in range(4):
            finite = 1.0 if seed < finite_seeds else math.nan
            for width in SYNTHETIC_WIDTHS:
                noise = 1 + 0.05 * rng.standard_normal(2)
                movement = 0.6 if scaling == "mean-field" else 0.6 * math.sqrt(64 / width)
                runs.append({"scaling": scaling, "seed": seed, "width": width,
                             "status": "completed" if seed < finite_seeds else "diverged",
                             "movement": finite * movement * noise[0],
                             "train_loss": finite * 1e-5, "test_loss": finite * 1e-4 * noise[1],
                             "initial_test_loss": 0.3, "zero_test_loss": 0.3})
                if width == widest:
                    continue
                initial = math.sqrt(1 / width + 1 / widest) * noise[1]
                transport += [{"scaling": scaling, "seed": seed, "width": width,
                               "stage": stage, "distance": distance}
                              for stage, distance in (("initial", initial),
                                                      ("trained",
                                                       finite * trained_distance(initial)))]
            cloud += [{"scaling": scaling, "seed": seed, "width": 64, "stage": stage,
                       "neuron": neuron, "angle": 10.0 * neuron, "c": 1.0}
                      for stage in ("initial", "trained") for neuron in range(3)]
    return {"runs": pd.DataFrame(runs), "transport": pd.DataFrame(transport),
            "particles": pd.DataFrame(cloud), "neurons": _neurons([-1.0] * 4),
            "scales": _scales([1.0] * 4)}


def _neurons(slopes: list[float], noise: float = 0.0) -> pd.DataFrame:
    """Per seed, final training loss 0.01 (m / 2)^slope over m = 2..256 (L_0 = 1), times a
    seeded log-normal noise."""
    rng = np.random.default_rng(1)
    return pd.DataFrame([
        {"seed": seed, "width": m, "status": "completed", "zero_train_loss": 1.0,
         "train_loss": 0.01 * (m / 2) ** slope * math.exp(noise * rng.standard_normal()),
         "test_loss": 0.02 * (m / 2) ** slope, "relative_movement": 0.5}
        for seed, slope in enumerate(slopes) for m in (2, 8, 32, 256)])


def _scales(effects: list[float]) -> pd.DataFrame:
    """Per seed, tau in {0.1, 1, 10}: test loss 1e-3 * 10^(effect log10(tau / 0.1) / 2) and
    relative movement 10^-(effect log10(tau / 0.1) / 2): the largest tau has a test loss 10^effect
    times the smallest's and a movement 10^-effect times."""
    return pd.DataFrame([
        {"seed": seed, "scale": tau, "status": "completed", "lr": 0.5, "zero_test_loss": 1.0,
         "train_loss": 1e-5, "test_loss": 1e-3 * 10 ** (effect * math.log10(tau / 0.1) / 2),
         "relative_movement": 10 ** (-effect * math.log10(tau / 0.1) / 2)}
        for seed, effect in enumerate(effects) for tau in (0.1, 1.0, 10.0)])


@pytest.mark.parametrize(("slopes", "effects", "verdict"), [
    ([-1.0, -1.2, -0.8, -1.1], [1.0, 1.2, 0.8, 1.1], "pass"),
    ([1.0, 1.2, 0.8, 1.1], [-1.0, -1.2, -0.8, -1.1], "fail"),
    ([-1.0, 1.2, -0.8, 0.9], [1.0, -1.2, 0.8, -0.9], "inconclusive"),
])
def test_neuron_and_scale_checks_on_synthetic_tables(slopes, effects, verdict):
    """Loss falling with m and rich beating lazy pass; the reverse fails; slopes of both signs
    across seeds are inconclusive. The "loss near 0" check reads the level at m = 256:
    0.01 * 128^slope, below 0.01 for negative slopes, far above for positive ones."""
    config = validate_config(MeanFieldConfig, {"global_loss_tolerance": 0.01})
    falls, near = neuron_checks(config, _neurons(slopes))
    lazy, rich = scale_checks(_scales(effects))
    assert falls.measured == pytest.approx(np.mean(slopes), rel=1e-10)
    assert rich.measured == pytest.approx(np.mean(effects), rel=1e-10)
    assert lazy.measured == pytest.approx(-np.mean(effects), rel=1e-10)
    assert {falls.verdict, lazy.verdict, rich.verdict} == {verdict}
    if verdict != "inconclusive":
        assert near.verdict == verdict
    assert near.name == "loss near 0 at m = 256 (mean-field)"


def test_symmetrized_net_starts_at_zero_and_scales_as_tau_squared():
    """f_0 = 0 on every input; with the pairing undone (neuron i alone), the output of the
    tau-scaled net is tau^2 times that of tau = 1 (2-homogeneous)."""
    x = with_bias_coordinate(_inputs(dim=3))
    for tau in (0.1, 3.0):
        net = symmetrized(two_layer_net("mean-field", 3, 8, seed=4), tau)
        torch.testing.assert_close(net(x), torch.zeros(10, 1, dtype=torch.float64))
        first, second = net.layers
        np.testing.assert_array_equal(first.weight[:4].detach(), first.weight[4:].detach())
        np.testing.assert_array_equal(second.weight[:, :4].detach(),
                                      -second.weight[:, 4:].detach())
    plain = two_layer_net("mean-field", 3, 8, seed=4)
    scaled = two_layer_net("mean-field", 3, 8, seed=4)
    with torch.no_grad():
        for parameter in scaled.parameters():
            parameter.mul_(3.0)
    torch.testing.assert_close(scaled(x), 9.0 * plain(x))
    with pytest.raises(WidenetError, match="odd"):
        validate_config(MeanFieldConfig, {"scale_width": 7})


def _transport_check(trained_distance, finite_seeds: int = 4):
    config = validate_config(MeanFieldConfig, {"widths": SYNTHETIC_WIDTHS,
                                               "particle_width": 64})
    analysis = STUDY.analyze(config, _synthetic_tables(trained_distance, finite_seeds))
    slopes = analysis.tables["slopes"].set_index(["scaling", "measure"])["slope"]
    check = {check.name: check for check in analysis.checks}[
        "transport ratio slope (mean-field)"]
    return check, slopes, analysis.checks


def test_transport_check_passes_trained_measures_converging_at_the_monte_carlo_rate():
    """Trained distances a constant times the initial ones (the flow map carries the i.i.d.
    draws' sampling noise): the ratio is flat in m, whatever the noise of the draws."""
    check, slopes, _ = _transport_check(lambda initial: 1.3 * initial)
    assert check.verdict == "pass"
    assert check.measured == pytest.approx(0.0, abs=1e-9)
    assert slopes[("mean-field", "transport_trained")] == pytest.approx(
        slopes[("mean-field", "transport_initial")], abs=1e-9)


def test_transport_check_fails_trained_measures_that_stop_converging():
    """Trained measures with a width-independent offset b = 0.1 from one limit,
    SW_trained = sqrt(SW_initial^2 + b^2): the distances still fall with m (the old check,
    trained slope <= 0, passed), but the ratio to the initial distances grows."""
    check, slopes, _ = _transport_check(lambda initial: math.sqrt(initial**2 + 0.01))
    assert slopes[("mean-field", "transport_trained")] < -0.1
    assert check.verdict == "fail"
    assert check.measured > 0.25


def test_checks_on_one_finite_seed_are_inconclusive():
    """With every seed but one diverged, each measurement is that seed's value and has no
    standard error (NaN): values that would pass as exact are inconclusive."""
    check, _, checks = _transport_check(lambda initial: 1.3 * initial, finite_seeds=1)
    assert check.measured == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(check.stderr)
    assert [c.verdict for c in checks[:4]] == ["inconclusive"] * 4
    assert all(math.isfinite(c.measured) for c in checks[:4])


def test_particle_table_and_teacher_angles():
    w = torch.tensor([[0.0, 2.0, -1.0, 0.5], [-1.0, 0.0, 0.2, -3.0]], dtype=torch.float64)
    table = particle_table((w, None), {"scaling": "ntk", "seed": 0}, 2)
    assert list(table["stage"]) == ["initial", "initial"]
    np.testing.assert_allclose(table["angle"], [90.0, 180.0])
    np.testing.assert_allclose(table["norm_a"], [2.0, 1.0])
    np.testing.assert_allclose(table["bias"], [-1.0, 0.2])
    np.testing.assert_allclose(table["c"], [0.5, -3.0])
    config = validate_config(MeanFieldConfig, TINY)
    angles = teacher_angles(config, 0)
    assert angles.shape == (config.teacher_width,)
    assert np.all(np.abs(angles) <= 180.0)


def test_a_diverging_training_is_a_data_point(tmp_path):
    config = validate_config(MeanFieldConfig, {**TINY, "lr": 1e4})
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    tables = compute_task(config, "mean-field", 0, context)
    assert set(tables["runs"]["status"]) == {"diverged"}
    assert tables["runs"]["movement"].isna().all()
    assert tables["transport"].query("stage == 'trained'")["distance"].isna().all()
    assert tables["transport"].query("stage == 'initial'")["distance"].notna().all()
    assert set(tables["particles"]["stage"]) == {"initial"}
    _, analysis = run_in_memory(STUDY, tmp_path, **{**TINY, "lr": 1e4})
    assert [check.verdict for check in analysis.checks] == ["inconclusive"] * 8
    assert analysis.diverged.startswith("all 22 training runs diverged")
    assert all(png_bytes(figure, dpi=30) for figure in analysis.figures.values())


@pytest.mark.parametrize(("values", "key"), [
    ({"width": [64]}, "width"),
    ({"widths": [0, 64, 128]}, "widths"),
    ({"widths": [64, 64, 128]}, "widths"),
    ({"widths": [64, 128], "particle_width": 64}, "widths"),
    ({"widths": [64, 128, 256], "particle_width": 100}, "particle_width"),
    ({"seeds": 1}, "seeds"),
    ({"dim": 1}, "dim"),
    ({"lr": 0}, "lr"),
    ({"slope_tolerance": 0.3}, "slope_tolerance"),
    ({"seed": -1}, "seed"),
    ({"neuron_counts": [2, 2, 4]}, "neuron_counts"),
    ({"scales": [0.1]}, "scales"),
    ({"scales": [0.1, 1e4]}, "scales"),
    ({"global_loss_tolerance": 1.0}, "global_loss_tolerance"),
])
def test_config_errors_name_the_key(values, key):
    with pytest.raises(WidenetError, match=repr(key)):
        validate_config(MeanFieldConfig, values)


def test_config_presets_are_valid():
    quick = validate_config(MeanFieldConfig, MeanFieldConfig.QUICK)
    assert quick.particle_width in quick.widths
    assert validate_config(MeanFieldConfig, {"widths": [512, 64, 256, 64]}).widths == [64, 256,
                                                                                        512]
    assert all(field.description for name, field in MeanFieldConfig.model_fields.items()
               if name != "seed")


@pytest.mark.slow
def test_quick_preset_checks_pass(tmp_path):
    if not FULL:
        pytest.skip("set WIDENET_FULL_TESTS=1 to run the quick preset")
    _, analysis = run_in_memory(STUDY, tmp_path)
    # with m = 2, 8, 32 and 3 seeds the loss-in-m slope is carried by one stuck two-neuron
    # net (docs/studies/mean-field.md): it may be inconclusive, never fail
    failed = [(c.name, c.measured, c.verdict) for c in analysis.checks if c.verdict != "pass"
              and not (c.name.startswith("final loss falls") and c.verdict == "inconclusive")]
    assert not failed
