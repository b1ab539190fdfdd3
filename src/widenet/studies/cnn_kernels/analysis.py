"""The analysis of the ``cnn-kernels`` study: concentration slopes, accuracies, the approach of
trained CNNs to the NTK's prediction, and the checks."""

from __future__ import annotations

import pandas as pd

from widenet.checks import Check, check_close, check_interval
from widenet.studies.cnn_kernels.config import CnnKernelsConfig
from widenet.studies.cnn_kernels.figures import (
    accuracy_figure,
    concentration_figure,
    distance_figure,
)
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import mean_stderr, power_law_fit_or_nan

PREDICTED_SLOPE = -0.5
SLOPE_TOLERANCE = 0.1
"""Accepted |fitted slope + 1/2| of the concentration fit: room for the O(1/m) corrections at
the smallest widths, as in ntk-concentration (docs/studies/cnn-kernels.md, "Checks")."""


def slope_table(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per readout: the OLS fit log ``value`` = c + slope log m over every network, with the
    slope's standard error."""
    rows = []
    for readout, group in frame.groupby("readout", sort=False):
        fit = power_law_fit_or_nan(group["m"], group[value])
        rows.append({"readout": readout, "slope": fit.slope, "slope_stderr": fit.slope_stderr,
                     "intercept": fit.intercept, "points": fit.points,
                     "m_min": group["m"].min(), "m_max": group["m"].max()})
    return pd.DataFrame(rows)


def trained_summary(trained: pd.DataFrame) -> pd.DataFrame:
    """Per (readout, m): mean test accuracy and mean relative distance to the NTK's
    prediction over the seeds, each with its standard error."""
    rows = []
    for (readout, m), group in trained.groupby(["readout", "m"], sort=False):
        accuracy, accuracy_se = mean_stderr(group["accuracy"])
        distance, distance_se = mean_stderr(group["distance"])
        rows.append({"readout": readout, "m": m, "accuracy": accuracy,
                     "accuracy_stderr": accuracy_se, "distance": distance,
                     "distance_stderr": distance_se, "networks": len(group)})
    return pd.DataFrame(rows)


def concentration_checks(slopes: pd.DataFrame) -> list[Check]:
    return [check_close(
        f"concentration slope {row.readout}",
        "||K_m - Theta||_F / ||Theta||_F ~ m^-1/2 for the CNN with "
        f"{'flatten' if row.readout == 'flatten' else 'global-pooling'} readout "
        f"(m = {row.m_min}..{row.m_max})",
        predicted=PREDICTED_SLOPE, measured=row.slope, tolerance=SLOPE_TOLERANCE,
        stderr=row.slope_stderr, note=f"{row.points} networks; stderr from the OLS fit")
        for row in slopes.itertuples()]


def approach_checks(slopes: pd.DataFrame) -> list[Check]:
    return [check_interval(
        f"approach to the NTK prediction {row.readout}",
        "trained CNNs approach the NTK's prediction as width grows: log-log slope of the "
        f"relative distance against m < 0 (m = {row.m_min}..{row.m_max})",
        measured=row.slope, stderr=row.slope_stderr, high=0.0, predicted=PREDICTED_SLOPE,
        note=f"{row.points} trained networks; stderr from the OLS fit; lazy-training theory "
             "predicts -1/2")
        for row in slopes.itertuples()]


def analyze(config: CnnKernelsConfig, tables: Tables) -> Analysis:
    """Slopes and summaries of both parts, with figures and checks."""
    concentration = slope_table(tables["concentration"], "error")
    approach = slope_table(tables["trained"], "distance")
    summary = trained_summary(tables["trained"])
    kernels = tables["kernel_accuracy"]
    figures = {"concentration": concentration_figure(tables["concentration"], concentration,
                                                     PREDICTED_SLOPE),
               "accuracy": accuracy_figure(summary, kernels),
               "distance": distance_figure(tables["trained"], approach, PREDICTED_SLOPE)}
    return Analysis(tables={"concentration_slopes": concentration, "approach_slopes": approach,
                            "trained": summary, "kernel_accuracy": kernels},
                    figures=figures,
                    checks=concentration_checks(concentration) + approach_checks(approach))
