"""The analysis of the ``ntk-concentration`` study: power-law slopes, paired abs/ReLU ratios,
the equal-parameter comparison, and the checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import PowerLawFit, mean_stderr, power_law_fit
from widenet.studies.ntk_concentration.config import ConcentrationConfig
from widenet.studies.ntk_concentration.figures import (
    abs_relu_figure,
    error_vs_params_figure,
    error_vs_width_figure,
    structure_figure,
)
from widenet.studies.ntk_concentration.structure import (
    equal_params_trend_checks,
    heuristic_log_ratio,
    structure_checks,
)

PREDICTED_SLOPE = -0.5


SLOPE_TOLERANCE = 0.1
"""Accepted |fitted slope + 1/2|: room for the O(1/m) corrections at the smallest widths
(docs/studies/ntk-concentration.md, "Checks")."""


def slope_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, pattern, depth): the OLS fit log error = c + slope log m, pooled over
    seeds, with the slope's OLS standard error
    (:func:`widenet.studies.common.fits.power_law_fit`)."""
    rows = []
    for (act, pattern, depth), group in errors.groupby(["activation", "pattern", "depth"],
                                                       sort=False):
        fit = power_law_fit(group["m"], group["error"])
        rows.append({"activation": act, "pattern": pattern, "depth": depth, "slope": fit.slope,
                     "slope_stderr": fit.slope_stderr, "intercept": fit.intercept,
                     "points": fit.points, "m_min": group["m"].min(), "m_max": group["m"].max()})
    return pd.DataFrame(rows)


def log_ratio_table(errors: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Per (pattern, depth, m, seed): log(error_first / error_second) on the same weights, and
    the same for the relative errors error / ||K_inf||_2 (``log_ratio_relative``)."""
    keys = ["pattern", "depth", "m", "seed"]
    ratios = errors[keys].drop_duplicates().set_index(keys)
    for value, column in (("error", "log_ratio"), ("relative_error", "log_ratio_relative")):
        wide = errors.pivot_table(index=keys, columns="activation", values=value)
        ratios[column] = np.log(wide[first] / wide[second])
    return ratios.reset_index()


def ratio_summary(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per (pattern, depth): the mean of the paired log ratios over widths and seeds (of the
    errors and of the relative errors), with its standard error std / sqrt(count): pairs at
    different widths and seeds are independent draws."""
    rows = []
    for (pattern, depth), group in ratios.groupby(["pattern", "depth"], sort=False):
        mean, stderr = mean_stderr(group["log_ratio"])
        relative, relative_stderr = mean_stderr(group["log_ratio_relative"])
        rows.append({"pattern": pattern, "depth": depth, "mean_log_ratio": mean,
                     "stderr": stderr, "pairs": len(group), "ratio": math.exp(mean),
                     "mean_log_ratio_relative": relative, "stderr_relative": relative_stderr})
    return pd.DataFrame(rows)


def _predict_log(fit: PowerLawFit, log_x: np.ndarray, at: float) -> tuple[float, float]:
    """The OLS prediction of log y at log x = ``at`` and its standard error
    s sqrt(1/N + (at - mean)^2 / Sxx), with s^2 = slope_stderr^2 Sxx."""
    sxx = float(((log_x - log_x.mean()) ** 2).sum())
    s2 = fit.slope_stderr**2 * sxx
    value = fit.intercept + fit.slope * at
    return value, math.sqrt(s2 / log_x.size + (at - log_x.mean()) ** 2 * s2 / sxx)


def equal_params_table(errors: pd.DataFrame, dim: int, outputs: int) -> pd.DataFrame:
    """Per (activation, depth), both patterns' power-law fits of error against the parameter
    count P, evaluated at the geometric middle P0 of the P range both patterns cover; the
    quadratic/constant log ratio there, with the standard error of the two OLS predictions,
    and the ratio the sqrt(sum_l 1/m_l) heuristic predicts at P0
    (:func:`~widenet.studies.ntk_concentration.structure.heuristic_log_ratio`)."""
    rows = []
    for (act, depth), group in errors.groupby(["activation", "depth"], sort=False):
        parts = {p: g for p, g in group.groupby("pattern")}
        if set(parts) != {"constant", "quadratic"}:
            continue
        low = max(g["params"].min() for g in parts.values())
        high = min(g["params"].max() for g in parts.values())
        at = 0.5 * (math.log(low) + math.log(high))
        row: dict[str, Any] = {"activation": act, "depth": depth, "params": math.exp(at),
                               "overlap": low <= high}
        variance = 0.0
        for pattern, part in parts.items():
            log_p = np.log(part["params"].to_numpy(dtype=float))
            fit = power_law_fit(part["params"], part["error"])
            value, stderr = _predict_log(fit, log_p, at)
            row[f"error_{pattern}"] = math.exp(value)
            row[f"slope_{pattern}"] = fit.slope
            variance += stderr**2
        row["log_ratio"] = math.log(row["error_quadratic"] / row["error_constant"])
        row["stderr"] = math.sqrt(variance)
        row["log_ratio_heuristic"] = heuristic_log_ratio(int(depth), row["params"], dim,
                                                         outputs)
        rows.append(row)
    return pd.DataFrame(rows)


def slope_checks(slopes: pd.DataFrame) -> list[Check]:
    """Fitted slope of log error against log m within SLOPE_TOLERANCE of -1/2."""
    return [check_close(
        f"slope {row.activation}/{row.pattern}/L={row.depth}",
        f"||K(theta) - K_inf||_2 ~ m^-1/2: log-log slope against m = -1/2 "
        f"(m = {row.m_min}..{row.m_max})",
        predicted=PREDICTED_SLOPE, measured=row.slope, tolerance=SLOPE_TOLERANCE,
        stderr=row.slope_stderr, note=f"{row.points} networks pooled; stderr from the OLS fit")
        for row in slopes.itertuples()]


def activation_checks(summary: pd.DataFrame) -> list[Check]:
    """Mean paired log(error_abs / error_relu) < 0 by two standard errors: |s| concentrates
    better than ReLU (a directional check)."""
    return [check_direction(
        f"abs vs relu {row.pattern}/L={row.depth}",
        "|s| concentrates better than ReLU: mean log(error_abs / error_relu) < 0",
        measured=row.mean_log_ratio, stderr=row.stderr, direction="below",
        note=f"{row.pairs} pairs of networks with the same weights; error ratio exp(mean) = "
             f"{row.ratio:.3g}; relative-error ratio {math.exp(row.mean_log_ratio_relative):.3g}")
        for row in summary.itertuples()]


def analyze(config: ConcentrationConfig, tables: Tables) -> Analysis:
    """Slopes, abs/ReLU ratios, the equal-parameter comparison and the structure sweeps
    (:mod:`~widenet.studies.ntk_concentration.structure`), with figures and checks."""
    errors = tables["errors"]
    slopes = slope_table(errors)
    derived = {"slopes": slopes}
    figures = {"error_vs_width": error_vs_width_figure(errors, slopes, PREDICTED_SLOPE)}
    checks = slope_checks(slopes)
    if {"abs", "relu"} <= set(config.activations):
        ratios = log_ratio_table(errors, "abs", "relu")
        summary = ratio_summary(ratios)
        derived["abs_vs_relu"] = summary
        figures["abs_vs_relu"] = abs_relu_figure(ratios, summary)
        checks += activation_checks(summary)
    equal = equal_params_table(errors, config.dim, config.outputs)
    if not equal.empty:
        derived["equal_params"] = equal
        figures["error_vs_params"] = error_vs_params_figure(errors, equal)
        checks += equal_params_trend_checks(equal)
    if "probes" in tables:
        structure_tables, structure = structure_checks(tables["probes"])
        derived.update(structure_tables)
        figures["structure"] = structure_figure(tables["probes"], structure_tables["sweep_fits"],
                                              structure_tables.get("family"))
        checks += structure
    return Analysis(tables=derived, figures=figures, checks=checks)
