"""The analysis of the ``mean-field`` study: per-width summaries, movement and transport slopes,
and the checks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction, check_interval
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import (
    all_diverged,
    finite_mean_stderr,
    power_law_fit,
    power_law_fit_or_nan,
)
from widenet.studies.mean_field.config import MeanFieldConfig
from widenet.studies.mean_field.figures import (
    iid_transport_law,
    loss_figure,
    movement_figure,
    neurons_figure,
    particle_figure,
    scales_figure,
    transport_figure,
)
from widenet.studies.mean_field.measure import teacher_angles

PREDICTED_MOVEMENT_SLOPE = {"mean-field": 0.0, "ntk": -0.5}
"""Exponent of the distance travelled per particle against m (module docstring)."""
MEASURES = {"movement": "(1/m) sum_i ||w_i(T) - w_i(0)||",
            "transport_initial": "sliced W_2(mu_m(0), mu_max(0))",
            "transport_trained": "sliced W_2(mu_m(T), mu_max(T))",
            "transport_ratio": "sliced W_2(mu_m(T), mu_max(T)) / sliced W_2(mu_m(0), mu_max(0))"}
"""The measures whose slope against the width m is fitted, with their formulas."""


def analyze(config: MeanFieldConfig, tables: Tables) -> Analysis:
    """Summaries per width, slopes against m, figures and checks (docs/studies/mean-field.md).

    Every check's standard error is that over the seeds with a finite measurement: NaN, and the
    verdict inconclusive, when fewer than two seeds are left (the others diverged)."""
    runs, transport = tables["runs"], tables["transport"]
    summary = _summarize(runs, ["scaling", "width"],
                         ["movement", "train_loss", "test_loss", "initial_test_loss",
                          "zero_test_loss"])
    transport_summary = _summarize(transport, ["scaling", "width", "stage"], ["distance"])
    slopes = _fit_slopes(_measures(runs, transport))
    particles = tables["particles"]
    first = int(particles["seed"].min())
    figures = {"movement": movement_figure(summary),
               "particles": particle_figure(particles[particles["seed"] == first],
                                            teacher_angles(config, first)),
               "transport": transport_figure(transport_summary, config.widths[-1]),
               "test_loss": loss_figure(summary)}
    neurons, scales = tables["neurons"], tables["scales"]
    figures |= {"neurons": neurons_figure(neurons), "scales": scales_figure(scales)}
    checks = [*_movement_checks(config, slopes), _transport_check(config, slopes),
              _loss_check(config, runs), *neuron_checks(config, neurons),
              *scale_checks(scales)]
    statuses = pd.concat([runs["status"], neurons["status"], scales["status"]])
    diverged = all_diverged(statuses, "training runs", "lower lr (or noise)")
    return Analysis(tables={"summary": summary, "transport_summary": transport_summary,
                            "slopes": slopes, "neurons": neurons, "scales": scales},
                    figures=figures, checks=checks, diverged=diverged)


def _summarize(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per group of ``keys``: the number of rows, and the mean (column) and standard
    error over the seeds (column + "_se") of each of ``columns``, over the finite values."""
    rows = []
    for values, group in frame.groupby(keys):
        row: dict[str, object] = dict(zip(keys, values, strict=True)) | {"runs": len(group)}
        for column in columns:
            row[column], row[f"{column}_se"] = finite_mean_stderr(group[column])
        rows.append(row)
    return pd.DataFrame(rows)


def _measures(runs: pd.DataFrame, transport: pd.DataFrame) -> pd.DataFrame:
    """The long table (scaling, seed, width, measure, value) of the measures of MEASURES: the
    movement, the transport distance per stage, and per (scaling, seed, width) their ratio
    SW_2(trained) / SW_2(initial) (NaN when the training diverged)."""
    keys = ["scaling", "seed", "width"]
    stages = transport.pivot(index=keys, columns="stage", values="distance")
    ratio = (stages["trained"] / stages["initial"]).rename("value").reset_index()
    return pd.concat([
        runs[[*keys, "movement"]].rename(columns={"movement": "value"}).assign(measure="movement"),
        transport.assign(measure="transport_" + transport["stage"])
        .rename(columns={"distance": "value"})[[*keys, "value", "measure"]],
        ratio.assign(measure="transport_ratio")], ignore_index=True)


def _fit_slopes(measures: pd.DataFrame) -> pd.DataFrame:
    """Per (scaling, measure): the log-log least-squares slope against m over the finite
    values, fitted per seed (NaN with fewer than two widths), then mean and standard error
    over the seeds."""
    rows = []
    for (scaling, measure), group in measures.groupby(["scaling", "measure"]):
        per_seed = pd.Series([_slope(part) for _, part in group.groupby("seed")], dtype=float)
        slope, stderr = finite_mean_stderr(per_seed)
        rows.append({"scaling": scaling, "measure": measure, "slope": slope, "stderr": stderr,
                     "seeds": int(np.isfinite(per_seed).sum()),
                     "widths": int(group["width"].nunique())})
    return pd.DataFrame(rows)


def _slope(part: pd.DataFrame) -> float:
    """One seed's log-log slope of ``value`` against ``width`` over positive finite values."""
    return power_law_fit_or_nan(part["width"], part["value"]).slope


def _movement_checks(config: MeanFieldConfig, slopes: pd.DataFrame) -> list[Check]:
    """Per scaling: the movement slope against its prediction (PREDICTED_MOVEMENT_SLOPE)."""
    fit = slopes.set_index(["scaling", "measure"])
    checks = []
    for scaling, predicted in PREDICTED_MOVEMENT_SLOPE.items():
        row = fit.loc[(scaling, "movement")]
        checks.append(check_close(
            f"movement slope ({scaling})",
            f"{MEASURES['movement']} ~ m^{predicted:g} under the {scaling} scaling",
            predicted=predicted, measured=row["slope"], stderr=row["stderr"],
            tolerance=config.slope_tolerance,
            note=f"log-log fit over m = {config.widths[0]}..{config.widths[-1]}, mean of "
                 f"{int(row['seeds'])} seeds"))
    return checks


def _transport_check(config: MeanFieldConfig, slopes: pd.DataFrame) -> Check:
    """The mean-field trained measures converge at the Monte-Carlo rate of their initial draws:
    the per-seed log-log slope of SW_2(mu_m(T), mu_M(T)) / SW_2(mu_m(0), mu_M(0)) against m
    (the trained slope minus the initial slope, paired per seed) within transport_tolerance of
    0; mean and standard error over the seeds."""
    fit = slopes.set_index(["scaling", "measure"])
    row = fit.loc[("mean-field", "transport_ratio")]
    trained, initial = (fit.loc[("mean-field", f"transport_{stage}"), "slope"]
                        for stage in ("trained", "initial"))
    return check_close(
        "transport ratio slope (mean-field)",
        f"the trained particle measures converge in width at the rate m^-1/2 of their i.i.d. "
        f"initial draws (propagation of chaos): {MEASURES['transport_ratio']} ~ m^0",
        predicted=0.0, measured=row["slope"], stderr=row["stderr"],
        tolerance=config.transport_tolerance,
        note=f"log-log fit per seed over m = {config.widths[0]}..{config.widths[-2]} against "
             f"m_max = {config.widths[-1]}, mean of {int(row['seeds'])} seeds; the distances "
             f"themselves fall with slopes {trained:.3f} (trained) and {initial:.3f} (initial; "
             f"i.i.d. law sqrt(1/m + 1/m_max): {iid_transport_slope(config.widths):.3f})")


def iid_transport_slope(widths: list[int]) -> float:
    """The log-log least-squares slope of sqrt(1/m + 1/m_max) over the widths m below the
    widest m_max: the slope that sliced W_2 distances between i.i.d. samples of sizes m and
    m_max would show (-1/2 when m_max is much wider than all m)."""
    below = np.asarray(widths[:-1], dtype=float)
    return power_law_fit(below, iid_transport_law(below, widths[-1])).slope


def _loss_check(config: MeanFieldConfig, runs: pd.DataFrame) -> Check:
    """The mean-field test loss at the widest width against the second widest, paired per
    seed: (L(m_max) - L(m_2)) / L(m_2) within loss_tolerance of 0."""
    widest, second = config.widths[-1], config.widths[-2]
    mean_field = runs[runs["scaling"] == "mean-field"].pivot(index="seed", columns="width",
                                                             values="test_loss")
    gap, stderr = finite_mean_stderr((mean_field[widest] - mean_field[second]) / mean_field[second])
    return check_close(
        f"test loss converged in width (mean-field, m={second} vs {widest})",
        "the mean-field test loss has a width-independent limit: "
        "(L_test(m_max) - L_test(m_2)) / L_test(m_2) -> 0",
        predicted=0.0, measured=gap, stderr=stderr, tolerance=config.loss_tolerance,
        note="relative change paired per seed; mean and standard error over the seeds")


def neuron_checks(config: MeanFieldConfig, neurons: pd.DataFrame) -> list[Check]:
    """Global convergence in the number of neurons (Chizat & Bach 2018): the per-seed log-log
    slope of the final relative training loss L_T / L_0 (L_0 = the zero predictor's loss)
    against m is negative, and at the largest m the relative loss is below
    ``global_loss_tolerance``; means and standard errors over the seeds."""
    relative = neurons.assign(value=neurons["train_loss"] / neurons["zero_train_loss"])
    per_seed = pd.Series([power_law_fit_or_nan(part["width"], part["value"]).slope
                          for _, part in relative.groupby("seed")], dtype=float)
    slope, stderr = finite_mean_stderr(per_seed)
    counts = sorted(relative["width"].unique())
    largest = relative[relative["width"] == counts[-1]]["value"]
    level, level_se = finite_mean_stderr(largest)
    smallest, _ = finite_mean_stderr(relative[relative["width"] == counts[0]]["value"])
    return [
        check_direction(
            "final loss falls with the number of neurons (mean-field)",
            "a mean-field net with more neurons trains to a lower loss (global convergence "
            "holds for the limit measure, not for few particles): log-log slope of L_T / L_0 "
            "against m < 0",
            measured=slope, stderr=stderr, direction="below",
            note=f"m = {counts[0]}..{counts[-1]}, {config.neuron_steps} steps, "
                 f"{int(np.isfinite(per_seed).sum())} seeds; L_T / L_0 = {smallest:.3g} at "
                 f"m = {counts[0]}, {level:.3g} at m = {counts[-1]}"),
        check_interval(
            f"loss near 0 at m = {counts[-1]} (mean-field)",
            f"the widest net of the sweep reaches a near-global minimum: L_T / L_0 <= "
            f"{config.global_loss_tolerance:g}", measured=level, stderr=level_se,
            low=0.0, high=config.global_loss_tolerance, predicted=0.0,
            note=f"mean over the seeds, {config.neuron_steps} GD steps"),
    ]


def scale_checks(scales: pd.DataFrame) -> list[Check]:
    """Lazy versus rich (Chizat, Oyallon & Bach 2019), paired per seed between the smallest
    and the largest initialization scale tau: the large-tau net moves less relative to its
    initialization (log10 ratio < 0) and generalizes worse (log10 test-loss ratio > 0)."""
    taus = sorted(scales["scale"].unique())
    table = scales.pivot(index="seed", columns="scale")
    movement, movement_se = finite_mean_stderr(np.log10(table["relative_movement"][taus[-1]]
                                                        / table["relative_movement"][taus[0]]))
    test, test_se = finite_mean_stderr(np.log10(table["test_loss"][taus[-1]]
                                                / table["test_loss"][taus[0]]))
    train_small, _ = finite_mean_stderr(table["train_loss"][taus[0]])
    train_large, _ = finite_mean_stderr(table["train_loss"][taus[-1]])
    pair = f"tau = {taus[-1]:g} against tau = {taus[0]:g}, paired per seed"
    return [
        check_direction(
            f"large tau is lazy (tau = {taus[-1]:g} vs {taus[0]:g})",
            "the relative movement ||theta_T - theta_0|| / ||theta_0|| falls as the "
            "initialization scale tau grows: log10(movement ratio) < 0",
            measured=movement, stderr=movement_se,
            direction="below", note=pair),
        check_direction(
            f"rich generalizes better (tau = {taus[0]:g} vs {taus[-1]:g})",
            "on a teacher with few neurons the rich (small tau) net has a lower test loss "
            "than the lazy (large tau) one: log10(L_test(tau_max) / L_test(tau_min)) > 0",
            measured=test, stderr=test_se,
            direction="above",
            note=f"{pair}; final train losses {train_small:.2g} (tau = {taus[0]:g}) and "
                 f"{train_large:.2g} (tau = {taus[-1]:g})"),
    ]
