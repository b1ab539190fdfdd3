"""The lr-transfer study's numbers: optimal learning rates, their drift across widths, and the
coordinate check's slopes (docs/theory.md section 1; docs/studies/lr-transfer.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from widenet.checks import Check, check_direction, check_interval
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import all_diverged, mean_stderr, power_law_fit_or_nan
from widenet.studies.lr_transfer.config import PREDICTED_SLOPE, LRTransferConfig
from widenet.studies.lr_transfer.figures import (
    coordinate_figure,
    loss_curves_figure,
    optimum_figure,
)

DRIFT_TOLERANCE = 1.0
"""muP and NTK: |drift| <= 1 grid step over the width range, i.e. |shift per doubling| <= 1 /
doublings; SP: downward drift >= 1 grid step (docs/studies/lr-transfer.md, "Checks")."""
FLATNESS_TOLERANCE = 0.1
"""muP coordinate check: |slope of mean |z_l| against m| <= 0.1; SP: slope >= 0.1 (docs)."""


def refined_optimum(log2_lrs: Sequence[float], losses: Sequence[float]
                    ) -> tuple[float, float, bool]:
    """The optimum of a loss-vs-lr curve on a grid of log2 learning rates with step 1.

    Returns ``(log2_opt, log2_argmin, at_edge)``: the grid point k* with the smallest finite
    loss and, when both neighbours are finite, the vertex of the parabola through
    (k, ln loss_k) at k* - 1, k*, k* + 1, which lies within half a step of k*:
    log2_opt = k* + (ln L_- - ln L_+) / (2 (ln L_- - 2 ln L_* + ln L_+)).
    ``at_edge`` is true when k* is the lowest or highest grid point (the grid does not bracket
    the optimum). All NaN when no loss is finite (every run diverged).
    """
    k = np.asarray(log2_lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    order = np.argsort(k)
    k, loss = k[order], loss[order]
    finite = np.isfinite(loss) & (loss > 0)
    if not finite.any():
        return math.nan, math.nan, False
    best = int(np.nanargmin(np.where(finite, loss, np.nan)))
    at_edge = best in (0, len(k) - 1)
    if at_edge or not (finite[best - 1] and finite[best + 1]):
        return float(k[best]), float(k[best]), at_edge
    low, mid, high = np.log(loss[best - 1: best + 2])
    curvature = low - 2 * mid + high
    offset = 0.5 * (low - high) / curvature if curvature > 0 else 0.0
    return float(k[best] + offset), float(k[best]), False


def optimum_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per (parametrization, optimizer, width m, seed): the refined optimal log2 lr of the
    final train loss (:func:`refined_optimum`, over non-diverged runs), its grid argmin, whether
    it sits at the grid's edge, the loss there and the number of diverged learning rates."""
    rows = []
    keys = ["parametrization", "optimizer", "m", "seed"]
    for key, group in sweep.groupby(keys, sort=False):
        log2_opt, argmin, at_edge = refined_optimum(group["log2_lr"], group["train_loss"])
        finite = group[np.isfinite(group["train_loss"])]
        rows.append({**dict(zip(keys, key, strict=True)), "log2_lr_opt": log2_opt,
                     "log2_lr_argmin": argmin, "at_edge": at_edge,
                     "train_loss_opt": float(finite["train_loss"].min()) if len(finite)
                     else math.inf,
                     "diverged_lrs": int((group["status"] != "completed").sum())})
    return pd.DataFrame(rows)


def interior_slope(group: pd.DataFrame) -> tuple[float, float, int]:
    """``(slope, stderr, points)``: the OLS slope of log2 lr* against log2 m
    (:func:`~widenet.studies.common.fits.power_law_fit` of lr* = c m^slope) over the finite
    optima of ``group`` that are not ``at_edge``, with its OLS standard error; an optimum at the
    grid's edge is only a bound (lr* <= the lowest or >= the highest rate), not a measurement. Slope
    and stderr are NaN with fewer than 2 distinct widths left, the stderr with fewer than 3
    points."""
    interior = group[np.isfinite(group["log2_lr_opt"]) & ~group["at_edge"].astype(bool)]
    fit = power_law_fit_or_nan(interior["m"], np.exp2(interior["log2_lr_opt"]))
    return fit.slope, fit.slope_stderr, len(interior)


def seed_slopes(group: pd.DataFrame) -> pd.Series:
    """Each seed's shift of the optimal log2 lr per doubling of the width, d log2 lr* / d log2 m
    (the OLS slope over that seed's finite interior optima, :func:`interior_slope`), indexed by
    seed; a seed with fewer than two widths left has none and is left out."""
    slopes = pd.Series({seed: interior_slope(runs)[0] for seed, runs in group.groupby("seed")},
                       dtype=float)
    return slopes[np.isfinite(slopes)]


def seed_shifts(group: pd.DataFrame) -> tuple[float, float, int]:
    """``(shift, stderr, seeds)``: the mean of the seeds' shifts (:func:`seed_slopes`) and its
    standard error std / sqrt(seeds). The stderr is NaN when any optimum of ``group`` is at the
    grid's edge (a bound left out censors the sample) or fewer than two seeds have a slope;
    the shift is NaN when no seed has two widths left."""
    slopes = seed_slopes(group)
    if slopes.empty:
        return math.nan, math.nan, 0
    mean, stderr = mean_stderr(slopes.tolist())
    censored = bool(group["at_edge"].astype(bool).any())
    return mean, math.nan if censored else stderr, len(slopes)


def shift_table(optima: pd.DataFrame) -> pd.DataFrame:
    """Per (parametrization, optimizer, seed): that seed's shift per doubling of the width
    (:func:`seed_slopes`), the sample whose mean and standard error the drift checks judge."""
    keys = ["parametrization", "optimizer"]
    rows = [{**dict(zip(keys, key, strict=True)), "seed": seed, "shift": shift}
            for key, group in optima.groupby(keys, sort=False)
            for seed, shift in seed_slopes(group).items()]
    return pd.DataFrame(rows, columns=[*keys, "seed", "shift"])


def shift_band(name: str, doublings: float) -> tuple[float, float]:
    """The shifts per doubling the drift check of parametrization ``name`` accepts: SP drifts
    down, shift <= -DRIFT_TOLERANCE / doublings; muP and NTK transfer,
    |shift| <= DRIFT_TOLERANCE / doublings (at most one grid step over the width range)."""
    step = DRIFT_TOLERANCE / doublings
    return (-math.inf, -step) if name == "standard" else (-step, step)


def drift_table(optima: pd.DataFrame, widths: Sequence[int]) -> pd.DataFrame:
    """Per (parametrization, optimizer): the slope of log2 lr* against log2 m pooled over seeds
    and fitted on the interior optima only (:func:`interior_slope`, stderr from the scatter of
    the seeds), the drift = slope * log2(m_max / m_min) in grid steps (one step = a factor 2),
    the predicted drift (:data:`PREDICTED_SLOPE`), the shift per doubling of the width fitted
    seed by seed with its standard error over the seeds (:func:`seed_shifts`: what the checks
    judge) and the band of shifts the check accepts (``shift_low``, ``shift_high``:
    :func:`shift_band`), the raw spread max - min across widths of the seeds' mean grid argmin
    (rounded), the number of optima, of optima at the grid's edge and of interior optima
    fitted. ``drift_stderr`` = slope_stderr * log2(m_max / m_min), but NaN when any optimum is
    at the edge: leaving bounds out of the fit censors the sample (the edge optima are the ones
    that moved furthest), which the OLS error does not cover. The pooled fit (slope, drift) is
    reported for comparison; neither the checks nor the figures use it."""
    span = math.log2(max(widths) / min(widths))
    rows = []
    for (name, opt), group in optima.groupby(["parametrization", "optimizer"], sort=False):
        slope, stderr, fitted = interior_slope(group)
        shift, shift_stderr, shift_seeds = seed_shifts(group)
        shift_low, shift_high = shift_band(name, span)
        edge = int(group["at_edge"].sum())
        valid = group[np.isfinite(group["log2_lr_opt"])]
        per_width = valid.groupby("m")["log2_lr_argmin"].mean().round()
        rows.append({"parametrization": name, "optimizer": opt, "slope": slope,
                     "slope_stderr": stderr, "drift": slope * span,
                     "drift_stderr": stderr * span if edge == 0 else math.nan,
                     "drift_pred": PREDICTED_SLOPE[(name, opt)] * span,
                     "shift": shift, "shift_stderr": shift_stderr, "shift_seeds": shift_seeds,
                     "shift_low": shift_low, "shift_high": shift_high,
                     "doublings": span,
                     "argmin_spread": float(per_width.max() - per_width.min())
                     if len(per_width) else math.nan,
                     "edge_optima": edge, "fitted_optima": fitted, "optima": len(group)})
    return pd.DataFrame(rows)


def coordinate_slopes(coords: pd.DataFrame, step: int) -> pd.DataFrame:
    """Per (parametrization, optimizer, layer): the power-law slope against m of mean |z_l| and
    of mean |z_l - z_l,0| at ``step``, fitted for each seed separately (widths where that seed's
    run diverged drop out); mean and standard error over the seeds with a slope (NaN, so the
    checks are inconclusive, when no seed has two widths left)."""
    rows = []
    keys = ["parametrization", "optimizer", "layer"]
    for key, group in coords.groupby(keys, sort=False):
        at_step = group[group["step"] == step]
        row = {**dict(zip(keys, key, strict=True))}
        for column, out in (("mean_abs", "slope"), ("mean_abs_change", "change_slope")):
            slopes = [slope for _, runs in at_step.groupby("seed")
                      if np.isfinite(slope := power_law_fit_or_nan(runs["m"], runs[column]).slope)]
            row[out], row[f"{out}_stderr"] = (mean_stderr(slopes) if slopes
                                              else (math.nan, math.nan))
            row["seeds"] = len(slopes)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "slope", "slope_stderr", "seeds", "change_slope",
                                       "change_slope_stderr"])


def _drift_note(row: pd.Series) -> str:
    """The check's note: the shift per doubling with its standard error over seeds, the drift
    over the whole width range, how many optima were fitted and at the grid's edge, and the raw
    argmin spread."""
    edge = (f"; {row['edge_optima']} of {row['optima']} optima at the grid's edge (bounds, "
            "left out of the fit: inconclusive)" if row["edge_optima"] else "")
    return (f"shift of log2 lr* per doubling of m {row['shift']:+.3f} +- "
            f"{row['shift_stderr']:.3f} over {row['shift_seeds']} seeds (each seed's OLS slope "
            f"over its interior optima) = {row['shift'] * row['doublings']:+.2f} grid steps "
            f"over {row['doublings']:g} doublings{edge}; raw argmin spread "
            f"{row['argmin_spread']:.0f} steps")


TRANSFER_CLAIMS = {
    "mup": ("muP", "Tensor Programs V: muP's optimum is width-independent (muTransfer)"),
    "ntk": ("NTK", "framework claim v: the NTK concentrates around a width-independent limit, "
                   "so the same lr works across widths (the muP paper argues it does not)"),
}
"""The parametrizations whose optimal lr is claimed to transfer: their check's label and the
claim's source."""


def _supports(check: Check, name: str) -> str:
    """For the NTK check: which of the two claims the verdict supports."""
    if name != "ntk":
        return check.note
    side = {"pass": "supports the framework (the optimum transfers)",
            "fail": "supports the muP paper (the optimum moves with width)",
            "inconclusive": "decides neither claim"}[check.verdict]
    return f"{side}; {check.note}"


def _drift_checks(drifts: pd.DataFrame) -> list[Check]:
    """The shift of log2 lr* per doubling of the width, seed by seed (:func:`seed_shifts`),
    against its band (:func:`shift_band`): muP and NTK transfer, an interval check; SP drifts
    down, -shift >= DRIFT_TOLERANCE / doublings (directional). Inconclusive when
    ``shift_stderr`` is NaN: optima at the grid's edge, or fewer than two seeds with a slope."""
    checks = []
    for _, row in drifts.iterrows():
        name, opt = row["parametrization"], row["optimizer"]
        per_doubling = abs(row["shift_high"])  # one grid step over the range, per doubling
        if name in TRANSFER_CLAIMS:
            label, source = TRANSFER_CLAIMS[name]
            check = check_interval(
                f"{label} lr transfers ({opt})",
                f"{label} ({opt}): the optimal learning rate transfers across widths: shift of "
                f"log2 lr* per doubling of m within +-{per_doubling:.3g} (at most one grid "
                f"step, a factor 2, over the width range); {source}",
                measured=row["shift"], stderr=row["shift_stderr"], low=row["shift_low"],
                high=row["shift_high"], predicted=0.0, note=_drift_note(row))
            checks.append(replace(check, note=_supports(check, name)))
        elif name == "standard":
            checks.append(check_direction(
                f"SP lr drifts ({opt})",
                f"SP ({opt}): the optimal learning rate moves down with width by more than one "
                f"grid step over the width range: -(shift of log2 lr* per doubling) >= "
                f"{per_doubling:.3g}", measured=-row["shift"], stderr=row["shift_stderr"],
                direction="above", threshold=-row["shift_high"],
                predicted=-PREDICTED_SLOPE[(name, opt)], note=_drift_note(row)))
    return checks


def _coordinate_checks(slopes: pd.DataFrame) -> list[Check]:
    """muP: every layer's slope of mean |z_l| against m in [-0.1, 0.1] (the steepest is
    checked; a NaN slope, all runs diverged, is inconclusive); SP: the logits' slope >= 0.1."""
    checks = []
    for (name, opt), group in slopes.groupby(["parametrization", "optimizer"], sort=False):
        if name == "mup":
            worst = group.loc[group["slope"].abs().fillna(math.inf).idxmax()]
            checks.append(check_interval(
                f"muP coordinates flat ({opt})",
                f"muP ({opt}): mean |z_l| after the coordinate-check steps is flat in width "
                "for every layer (steepest layer shown)", measured=worst["slope"],
                stderr=worst["slope_stderr"], low=-FLATNESS_TOLERANCE,
                high=FLATNESS_TOLERANCE, predicted=0.0, note=f"layer {worst['layer']}"))
        elif name == "standard":
            out = group.loc[group["layer"].idxmax()]
            checks.append(check_direction(
                f"SP logits grow ({opt})",
                f"SP ({opt}): mean |logits| after the coordinate-check steps grows with width",
                measured=out["slope"], stderr=out["slope_stderr"], direction="above",
                threshold=FLATNESS_TOLERANCE, predicted=1.0,
                note=f"layer {out['layer']} (the readout)"))
    return checks


def analyze(config: LRTransferConfig, tables: Tables) -> Analysis:
    """Optimal learning rates per width, their drift, coordinate-check slopes; figures; checks
    (``diverged`` when every run of the learning-rate sweep diverged)."""
    sweep, coords = tables["sweep"], tables["coords"]
    optima = optimum_table(sweep)
    shifts = shift_table(optima)
    drifts = drift_table(optima, config.widths)
    slopes = coordinate_slopes(coords, config.coord_steps)
    figures = {"loss_vs_lr": loss_curves_figure(sweep, optima, config.loss),
               "optimal_lr": optimum_figure(optima, shifts, drifts, config.base()),
               **{f"coordinate_check_{opt}": coordinate_figure(coords, slopes, opt)
                  for opt in config.optimizers}}
    checks = _drift_checks(drifts) + _coordinate_checks(slopes)
    diverged = all_diverged(sweep["status"], "learning-rate sweep runs",
                            "lower sgd_log2_lr and adam_log2_lr")
    return Analysis(tables={"sweep": sweep, "coords": coords, "optima": optima,
                            "shifts": shifts, "drifts": drifts, "coord_slopes": slopes},
                    figures=figures, checks=checks, diverged=diverged)
