"""Statistics of the lazy-training study: per-alpha summaries and slopes against alpha.

Every number is first computed per replicate (seed) and then averaged, so that standard errors
are the spread over independent data sets and initializations divided by sqrt(seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import (
    all_diverged,
    finite_mean_stderr,
    power_law_fit_or_nan,
)
from widenet.studies.lazy_training.config import LazyTrainingConfig
from widenet.studies.lazy_training.figures import criterion_figure, loss_figure, movement_figure
from widenet.studies.lazy_training.measure import is_kinked

KEYS = ["activation", "width", "seed"]
MEASURES = {"weight_movement": "||w_T - w_0|| / ||w_0||",
            "kernel_movement": "||K_T - K_0||_F / ||K_0||_F",
            "linearization_error": "||f_T - f_lin,T|| / ||f_T - f_0||",
            "pattern_flips": "#{(unit, x_i): sign z changed}",
            "test_gap": "|L_test - L_test,lin| / L_test,lin"}
"""The measures whose slope against alpha is fitted, with their formulas (``test_gap``: the
relative test-loss gap to the linearized model, paired per seed; its absolute value is fitted)."""

SLOPE_COLUMNS = ["activation", "width", "measure", "fit", "slope", "stderr", "seeds", "checked"]
"""The columns of :func:`fit_slopes`'s table."""

GAP_ROUNDING = 1e3 * float(np.finfo(np.float64).eps)
"""|test_gap| below GAP_ROUNDING * alpha is float64 rounding, left out of the slope fits: the lazy
outputs alpha (f(w) - f(w_0)) lose about log10(alpha) digits to the subtraction, so the gap's
rounding error is about eps * alpha (measured: 0.1-5 eps alpha at alpha = 1e8); at the floor it
is at most ~0.5% of the fitted value."""


def checked_measures(activation: str) -> tuple[str, ...]:
    """The measures whose slope is checked against -1 for ``activation``.

    Smooth activations: the three movement measures (Chizat et al. 2019 need a Lipschitz Dh)
    and the test-loss gap, whose first-order term (1/n_test) <F_lin - y, F - F_lin> inherits
    the O(1/alpha) deviation. Kinked ones (relu, abs; Dh jumps where a pre-activation crosses
    0): the weight movement and the number of activation-pattern flips, which follows the
    pre-activations' O(1/alpha) movement; their NTK movement, linearization error and
    test-loss gap are measured but not checked.
    """
    if is_kinked(activation):
        return ("weight_movement", "pattern_flips")
    return ("weight_movement", "kernel_movement", "linearization_error", "test_gap")


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (activation, width, alpha): the mean (column) and standard error
    (column + "_se") over the replicates of every measurement, over the completed runs (the
    linearized model's losses over all), and the numbers of runs and of diverged runs."""
    columns = [*MEASURES, "train_loss", "test_loss", "train_loss_linear", "test_loss_linear",
               "kappa"]
    rows = []
    for (activation, width, alpha), group in runs.groupby(["activation", "width", "alpha"]):
        completed = group[group["status"] == "completed"]
        row: dict[str, object] = {"activation": activation, "width": width, "alpha": alpha,
                                  "runs": len(group), "diverged": len(group) - len(completed)}
        for column in columns:
            source = group if column.endswith("_linear") else completed
            row[column], row[f"{column}_se"] = finite_mean_stderr(source[column])
        rows.append(row)
    return pd.DataFrame(rows)


def poisson_slope(x: Sequence[float], counts: Sequence[float]) -> float:
    """The maximum-likelihood exponent s of counts_i ~ Poisson(c x_i^s) (Poisson regression
    with a log link, by Newton's method); zero counts take part, unlike in a log-log fit.
    NaN when all counts are zero or x has fewer than two distinct values."""
    log_x, k = np.log(np.asarray(x, dtype=float)), np.asarray(counts, dtype=float)
    if k.sum() == 0 or np.unique(log_x).size < 2:
        return math.nan
    design = np.column_stack([np.ones_like(log_x), log_x])
    beta = np.linalg.lstsq(design, np.log(k + 0.5), rcond=None)[0]
    for _ in range(100):
        rate = np.exp(design @ beta)
        step = np.linalg.solve(design.T @ (rate[:, None] * design), design.T @ (k - rate))
        beta = beta + step
        if np.abs(step).max() < 1e-12:
            break
    return float(beta[1])


def _slope(part: pd.DataFrame, measure: str) -> float:
    """One replicate's slope of ``measure`` against alpha: Poisson regression for the flip
    counts; otherwise a log-log least-squares fit of the positive values (for ``test_gap``:
    of |test_gap| where it exceeds GAP_ROUNDING * alpha), NaN unless two distinct alphas
    remain."""
    if measure == "pattern_flips":
        return poisson_slope(part["alpha"], part[measure])
    values = part[measure].abs() if measure == "test_gap" else part[measure]
    floor = GAP_ROUNDING * part["alpha"] if measure == "test_gap" else 0.0
    kept = values > floor
    return power_law_fit_or_nan(part.loc[kept, "alpha"], values[kept]).slope


def fit_slopes(runs: pd.DataFrame, alpha_min: float) -> pd.DataFrame:
    """Per (activation, width, measure): the slope against alpha over the completed runs with
    alpha >= alpha_min, fitted per replicate (see :func:`_slope`), then mean and standard error
    over the replicates; ``checked`` marks the slopes that are checked against -1. A slope
    whose runs all diverged is NaN (its check inconclusive)."""
    fitted = runs[runs["alpha"] >= alpha_min]
    rows = []
    for (activation, width), group in fitted.groupby(["activation", "width"]):
        completed = group[group["status"] == "completed"]
        for measure in MEASURES:
            per_seed = pd.Series([_slope(part, measure) for _, part in completed.groupby("seed")],
                                 dtype=float)
            slope, stderr = finite_mean_stderr(per_seed)
            rows.append({"activation": activation, "width": width, "measure": measure,
                         "fit": "poisson" if measure == "pattern_flips" else "log-log",
                         "slope": slope, "stderr": stderr,
                         "seeds": int(np.isfinite(per_seed).sum()),
                         "checked": measure in checked_measures(activation)})
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def analyze(config: LazyTrainingConfig, tables: Tables) -> Analysis:
    """Summaries per alpha, fitted slopes, figures and checks (docs/studies/lazy-training.md)."""
    runs = tables["runs"].merge(tables["reference"], on=KEYS)
    runs["test_gap"] = (runs["test_loss"] - runs["test_loss_linear"]) / runs["test_loss_linear"]
    runs["kappa"] = runs["kappa_1"] / runs["alpha"]
    summary = summarize(runs)
    slopes = fit_slopes(runs, config.alpha_min)
    checks = [check for (activation, width), group in summary.groupby(["activation", "width"])
              for check in _checks(config, activation, width, group, slopes)]
    figures = {"movement": movement_figure(summary, config.alpha_min),
               "losses": loss_figure(summary)}
    smooth = summary[np.isfinite(summary["kappa"])]
    if not smooth.empty:
        figures["criterion"] = criterion_figure(smooth)
    diverged = all_diverged(runs["status"], "training runs",
                            "lower lr_fraction or noise, or use moderate alphas")
    return Analysis(tables={"summary": summary, "slopes": slopes}, figures=figures,
                    checks=checks, diverged=diverged)


def _checks(config: LazyTrainingConfig, activation: str, width: int, summary: pd.DataFrame,
            slopes: pd.DataFrame) -> list[Check]:
    """The checks of one (activation, width) (see docs/studies/lazy-training.md)."""
    where = f"{activation}, m={width}"
    fits = slopes[(slopes["activation"] == activation) & (slopes["width"] == width)
                  & slopes["checked"]]
    checks = [check_close(
        f"{fit.measure} slope ({where})", f"{MEASURES[fit.measure]} ~ alpha^-1",
        predicted=-1.0, measured=fit.slope, stderr=fit.stderr,
        tolerance=config.slope_tolerance,
        note=f"{fit.fit} fit over alpha >= {config.alpha_min:g}, mean of {fit.seeds} seeds")
        for fit in fits.itertuples()]
    alpha_max = config.alphas[-1]
    top = summary[summary["alpha"] == alpha_max].iloc[0]
    checks.append(check_direction(
        f"linearization error at alpha={alpha_max:g} ({where})",
        "lazy limit reached: ||f_T - f_lin,T|| / ||f_T - f_0|| <= 1/alpha_max",
        measured=top["linearization_error"], stderr=top["linearization_error_se"],
        direction="below", threshold=1.0 / alpha_max, predicted=0.0,
        note=f"{top['diverged']} of {top['runs']} runs diverged"))
    return checks
