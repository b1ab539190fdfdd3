"""Small statistics the studies share: power-law fits, means with standard errors, and the
verdict on a study whose every training run diverged."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from widenet.errors import WidenetError


@dataclass(frozen=True)
class PowerLawFit:
    """``y ≈ exp(intercept) * x^slope``, fitted by least squares on ``log y`` against ``log x``.

    ``slope_stderr`` is the ordinary-least-squares standard error of the slope,
    ``sqrt(s^2 / sum (log x - mean log x)^2)`` with ``s^2`` the residual variance on
    ``len(x) - 2`` degrees of freedom (``nan`` with only two points).
    """

    slope: float
    intercept: float
    slope_stderr: float
    points: int


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Fit ``y ≈ c x^slope`` on the points with ``x, y > 0`` (repeated x values are fine)."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x_arr > 0) & (y_arr > 0) & np.isfinite(x_arr) & np.isfinite(y_arr)
    log_x, log_y = np.log(x_arr[keep]), np.log(y_arr[keep])
    if np.unique(log_x).size < 2:
        raise WidenetError("a power-law fit needs positive values at two or more distinct x")
    centred = log_x - log_x.mean()
    slope = float(centred @ (log_y - log_y.mean()) / (centred @ centred))
    intercept = float(log_y.mean() - slope * log_x.mean())
    dof = log_x.size - 2
    if dof > 0:
        residual = log_y - (intercept + slope * log_x)
        stderr = math.sqrt(float(residual @ residual) / dof / float(centred @ centred))
    else:
        stderr = math.nan
    return PowerLawFit(slope, intercept, stderr, int(log_x.size))


def power_law_fit_or_nan(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """:func:`power_law_fit`, or a fit whose slope, intercept and stderr are NaN when fewer
    than two distinct x have a positive finite y (the runs at the others diverged), so that a
    check built on it is inconclusive."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x_arr > 0) & (y_arr > 0) & np.isfinite(x_arr) & np.isfinite(y_arr)
    if np.unique(x_arr[keep]).size < 2:
        return PowerLawFit(math.nan, math.nan, math.nan, int(keep.sum()))
    return power_law_fit(x_arr, y_arr)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """The sample mean and its standard error ``std(ddof=1) / sqrt(n)``.

    One value has no standard error: it comes back as NaN, so that a check built on it is
    inconclusive rather than judged as if the value were exact.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise WidenetError("mean_stderr needs at least one value")
    if arr.size == 1:
        return float(arr[0]), math.nan
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size))


def finite_mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """:func:`mean_stderr` of the finite values; (nan, nan) when there are none (the runs
    diverged)."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    return mean_stderr(finite) if finite.size else (math.nan, math.nan)


def all_diverged(statuses: Iterable[str], what: str, fix: str) -> str:
    """The reason for :attr:`~widenet.studies.common.base.Analysis.diverged` when none of the
    training runs whose ``statuses`` are given completed ("" when one did, or when there are none):
    ``what`` names the runs, ``fix`` says which config key to change."""
    statuses = list(statuses)
    if not statuses or "completed" in statuses:
        return ""
    return f"all {len(statuses)} {what} diverged (checks on them are inconclusive); {fix}"
