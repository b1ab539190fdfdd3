"""The analysis of the ``gd-convergence`` study: errors against the predictions, fits across
widths, and the checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import all_diverged, mean_stderr, power_law_fit
from widenet.studies.gd_convergence.config import GDConfig
from widenet.studies.gd_convergence.figures import (
    deviation_figure,
    distance_figure,
    loss_curves_figure,
    rate_figure,
)

PREDICTED_DEVIATION_SLOPE = -0.5
DEVIATION_SLOPE_TOLERANCE = 0.1
"""Accepted |fitted slope + 1/2| of the curve deviation against m (docs, "Checks")."""
BAND_SIGMAS = 2.0
"""The rate and distance checks accept a mean error at the widest width within this many
typical one-network errors, extrapolated by the m^{-1/2} law (docs, "Checks")."""
DIVERGED_RATIO = 1e6
"""loss_T / loss_0 recorded for a run whose loss became NaN or inf: ``train``'s default
divergence threshold, which any diverged run has reached."""


def with_errors(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with rate_error = rate / rate_pred - 1, distance_error = distance /
    distance_pred - 1, loss_ratio = loss_T / loss_0 (DIVERGED_RATIO where not finite) and
    lambda_min_gap = |lambda_min(empirical NTK at init) / lambda_min(Theta) - 1|."""
    ratio = runs["loss_final"] / runs["loss_initial"]
    return runs.assign(rate_error=runs["rate"] / runs["rate_pred"] - 1,
                       lambda_min_gap=(runs["lambda_min_entk"] / runs["lambda_min_inf"]
                                       - 1).abs(),
                       distance_error=runs["distance"] / runs["distance_pred"] - 1,
                       loss_ratio=ratio.where(np.isfinite(ratio), DIVERGED_RATIO))


def width_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width m: mean over seeds and standard error (std / sqrt(seeds)) of the relative rate
    error, the curve deviation, the relative distance error and the measured and predicted
    relative movements; the largest loss ratio loss_T / loss_0 and the diverged runs."""
    rows = []
    for m, group in runs.groupby("m", sort=True):
        row: dict[str, Any] = {"m": m, "params": int(group["params"].iloc[0]),
                               "runs": len(group),
                               "diverged": int((group["status"] != "completed").sum()),
                               "loss_ratio_max": float(group["loss_ratio"].max())}
        for column in ("rate_error", "deviation_max", "distance_error", "relative_movement",
                       "relative_movement_pred", "lambda_min_gap"):
            row[column], row[f"{column}_stderr"] = mean_stderr(group[column])
        rows.append(row)
    return pd.DataFrame(rows)


def fit_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Power-law fits against m pooled over seeds (OLS slope, its standard error): the curve
    deviation (theory: -1/2) and the measured and predicted relative movement (theory: the
    predicted one's slope, -(1/2) d ln P / d ln m for a width-independent distance)."""
    rows = []
    for quantity in ("deviation_max", "relative_movement", "relative_movement_pred",
                     "lambda_min_gap"):
        fit = power_law_fit(runs["m"], runs[quantity])
        rows.append({"quantity": quantity, "slope": fit.slope, "slope_stderr": fit.slope_stderr,
                     "intercept": fit.intercept, "points": fit.points})
    return pd.DataFrame(rows)


def extrapolated_tolerance(runs: pd.DataFrame, column: str) -> float:
    """BAND_SIGMAS typical one-network errors at the widest width m_max, carried there from the
    narrower widths by the m^{-1/2} law: BAND_SIGMAS * sqrt(mean over their runs of
    error^2 m / m_max) (error^2 m estimates the squared bias plus variance of sqrt(m) error),
    over the finite errors; NaN when there is none (e.g. every narrower run diverged)."""
    narrow = runs[(runs["m"] < runs["m"].max()) & np.isfinite(runs[column])]
    if narrow.empty:
        return math.nan
    scaled = narrow[column].to_numpy(dtype=float) ** 2 * narrow["m"].to_numpy(dtype=float)
    return BAND_SIGMAS * math.sqrt(float(np.mean(scaled)) / float(runs["m"].max()))


def _widest_error_check(runs: pd.DataFrame, column: str, name: str, claim: str) -> Check:
    """Mean of ``column`` (a relative error) over the seeds of the widest width against 0,
    within :func:`extrapolated_tolerance`, with the seeds' standard error; inconclusive when
    the narrower widths have no finite error to set the tolerance."""
    widest = runs[runs["m"] == runs["m"].max()]
    mean, stderr = mean_stderr(widest[column])
    m = int(widest["m"].iloc[0])
    tolerance = extrapolated_tolerance(runs, column)
    note = (f"{len(widest)} seeds; tolerance: {BAND_SIGMAS:g} x the narrower widths' rms "
            f"one-network error scaled by m^-1/2 to m = {m}")
    if not math.isfinite(tolerance):
        note += " (none is finite, so no tolerance: inconclusive)"
    return check_close(name, f"{claim} at m = {m}", predicted=0.0, measured=mean,
                       tolerance=tolerance, stderr=stderr, note=note)


def convergence_check(runs: pd.DataFrame, decades: float) -> Check:
    """Every run's loss ratio at or below Du et al.'s guarantee (1 - lr lambda_min / (2n))^T."""
    bound = float(runs["steps"].iloc[0] * np.log10(runs["du_factor"].iloc[0]))
    diverged = int((runs["status"] != "completed").sum())
    return check_direction(
        "converges at shared lr", "every width converges linearly at the one learning rate: "
        "max over runs of log10(loss_T / loss_0) <= log10 of Du et al.'s (1 - lr "
        "lambda_min(Theta) / (2n))^T", measured=float(np.log10(runs["loss_ratio"].max())),
        direction="below", threshold=bound,
        note=f"{len(runs)} runs, {diverged} diverged; T = {int(runs['steps'].iloc[0])} steps "
             f"at lr = {runs['lr'].iloc[0]:.4g}; the kernel prediction falls >= {decades:g} "
             "decades")


def collapse_check(fits: pd.DataFrame) -> Check:
    """Fitted slope of the curve deviation against m within DEVIATION_SLOPE_TOLERANCE of -1/2."""
    fit = fits[fits["quantity"] == "deviation_max"].iloc[0]
    return check_close(
        "curves collapse", "the training curves collapse onto the kernel prediction: "
        "max_s ||f_s - f_pred,s|| / ||r_0|| ~ m^-1/2 (fitted log-log slope = -1/2)",
        predicted=PREDICTED_DEVIATION_SLOPE, measured=fit.slope,
        tolerance=DEVIATION_SLOPE_TOLERANCE, stderr=fit.slope_stderr,
        note=f"{fit.points} runs pooled; stderr from the OLS fit")


def lambda_min_check(fits: pd.DataFrame, widths: pd.DataFrame) -> Check:
    """The framework's assumption: lambda_min of the empirical NTK at initialization
    concentrates around lambda_min(Theta) as m grows: the fitted log-log slope of the relative
    gap against m is < 0 (directional; fluctuations of O(m^-1/2) predict -1/2)."""
    fit = fits[fits["quantity"] == "lambda_min_gap"].iloc[0]
    gaps = ", ".join(f"{100 * row.lambda_min_gap:.2g}%" for row in widths.itertuples())
    return check_direction(
        "lambda_min concentrates", "lambda_min of the empirical NTK at initialization tends "
        "to lambda_min(Theta) as m grows: log-log slope of |lambda_min(K_0) / "
        "lambda_min(Theta) - 1| against m < 0", measured=fit.slope, stderr=fit.slope_stderr,
        direction="below", predicted=-0.5,
        note=f"{fit.points} runs pooled, OLS stderr; mean gap by width {gaps}; an O(m^-1/2) "
             "fluctuation predicts slope -1/2")


def analyze(config: GDConfig, tables: Tables) -> Analysis:
    """Per-width summaries, power-law fits, the four figures and the five checks."""
    runs = with_errors(tables["runs"])
    widths_summary, fits = width_table(runs), fit_table(runs)
    checks = [
        _widest_error_check(runs, "rate_error", "linear rate",
                            "the loss decays at the kernel rate: late-window fitted rate / the "
                            "K_inf prediction's rate on the same window - 1 = 0"),
        convergence_check(runs, config.decades),
        collapse_check(fits),
        _widest_error_check(runs, "distance_error", "distance travelled",
                            "GD ends at the interpolant nearest theta_0: ||theta_T - theta_0|| "
                            "/ sqrt(r_0^T Theta^-1 r_0) - 1 = 0"),
        lambda_min_check(fits, widths_summary),
    ]
    figures = {"loss_curves": loss_curves_figure(tables["curves"], runs),
               "rate": rate_figure(runs, extrapolated_tolerance(runs, "rate_error")),
               "deviation": deviation_figure(runs, fits, PREDICTED_DEVIATION_SLOPE),
               "distance": distance_figure(runs, fits,
                                           extrapolated_tolerance(runs, "distance_error"))}
    diverged = all_diverged(runs["status"], "training runs", "lower lr_factor")
    return Analysis(tables={"runs": runs, "widths": widths_summary, "fits": fits},
                    figures=figures, checks=checks, diverged=diverged)
