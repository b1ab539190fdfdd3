"""The analysis of the ``ntk-spectrum`` study: summaries, angle-law fits and the checks.

See docs/studies/ntk-spectrum.md for what they show and how to read them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction, check_interval
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import mean_stderr, power_law_fit_or_nan
from widenet.studies.ntk_spectrum.config import SpectrumConfig, deep_depths
from widenet.studies.ntk_spectrum.figures import (
    REFERENCE_CONDITION,
    angle_figure,
    condition_figure,
    eigenvalue_figure,
    inverse_angle_figure,
)

DIAGONAL_ROUNDOFF = 8.0
"""|Theta_ii - (L + 1) ||x_i||^2 / d| <= 8 (L + 1)^2 eps: L + 1 summands, each a product of
<= L + 1 factors equal to 1 up to a few roundings per layer (docs, "Checks and tolerances")."""
LOG_COEFFICIENT = 1.5
"""The derived coefficient of ln L in 4 (L + 1) (Theta_ij / (L + 1) - 1/4) = (3/2) ln L + c - 3/2
+ o(1) (docs/studies/ntk-spectrum.md, "Refinements derived here")."""


def equicorrelated_condition(n: int, m: float) -> float:
    """cond of (1 - m) I + m 1 1^T (n x n, 0 <= m < 1): (1 + (n - 1) m) / (1 - m); at m = 1/4
    it is 1 + n/3, the limit of cond(K_inf) (docs/theory.md section 4)."""
    return (1.0 + (n - 1) * m) / (1.0 - m)


def universal_excess(depth: int) -> float:
    """(3/8) ln L / L: the leading, Delta-independent term of Theta_ij / (L + 1) - 1/4 at the
    EOC (derived in docs/studies/ntk-spectrum.md from theta_l ~ 3 pi / (2 Delta (l + 3/2 ln l
    + c)), docs/theory.md section 4)."""
    return 0.375 * math.log(depth) / depth


def diagonal_check(kernels: pd.DataFrame) -> Check:
    """max |Theta_ii - (L + 1) ||x_i||^2 / d| / ((L + 1)^2 eps) <= DIAGONAL_ROUNDOFF over every
    kernel (the ``diagonal_error`` of :func:`kernel_row`)."""
    eps = float(np.finfo(np.float64).eps)
    scaled = kernels["diagonal_error"] / ((kernels["depth"] + 1) ** 2 * eps)
    worst = kernels.loc[scaled.idxmax()]
    return check_interval(
        "diagonal", "Theta^{L+1}(x, x) = (L + 1) ||x||^2 / d exactly at the EOC (= L + 1 on "
        "the sphere): max |error| / ((L+1)^2 eps) over all Delta, L, draws, i",
        measured=float(scaled.max()), low=0.0, high=DIAGONAL_ROUNDOFF, predicted=0.0,
        note=f"float64 round-off bound; worst at Delta={worst['delta']:g}, "
             f"L={int(worst['depth'])}: |error| = {worst['diagonal_error']:.2e}")


def log_law_fit(depths: np.ndarray, scaled_excess: np.ndarray, next_term: np.ndarray
                ) -> tuple[float, float]:
    """OLS fit of y = a ln L + b + e t(L) (t: the next-order term's shape) to y = 4 (L + 1)
    (Theta_ij / (L + 1) - 1/4) over the given depths: (a, stderr of a from the residuals;
    NaN with no residual degree of freedom)."""
    design = np.stack([np.log(depths), np.ones_like(depths), next_term], axis=1)
    coef, *_ = np.linalg.lstsq(design, scaled_excess, rcond=None)
    dof = len(depths) - design.shape[1]
    if dof <= 0:
        return float(coef[0]), math.nan
    residual = scaled_excess - design @ coef
    covariance = (residual @ residual / dof) * np.linalg.inv(design.T @ design)
    return float(coef[0]), float(math.sqrt(covariance[0, 0]))


def log_law_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per Delta, over the deep depths (>= max/20): the ln L coefficient of y = 4 (L + 1)
    (Theta_ij/(L+1) - 1/4) fitted with the next-order term modelled as ln L / L (``log_coef``,
    ``log_coef_stderr``, the derivation's O(ln L / L) remainder of 1/theta) and as 1/L
    (``log_coef_alt``); ``model_spread`` = |log_coef - log_coef_alt|, how far the coefficient
    moves with the unresolved form of the next term."""
    rows = []
    for delta, group in summary.groupby("delta", sort=True):
        deep = group[group["depth"].isin(deep_depths(sorted(group["depth"])))]
        depths = deep["depth"].to_numpy(dtype=float)
        y = 4.0 * (depths + 1.0) * (deep["offdiag_mean"].to_numpy() - 0.25)
        coef, stderr = log_law_fit(depths, y, np.log(depths) / depths)
        alt, _ = log_law_fit(depths, y, 1.0 / depths)
        rows.append({"delta": delta, "depth_min": int(depths.min()),
                     "depth_max": int(depths.max()), "depths": len(depths), "log_coef": coef,
                     "log_coef_stderr": stderr, "log_coef_alt": alt,
                     "model_spread": abs(coef - alt)})
    return pd.DataFrame(rows)


def limit_checks(summary: pd.DataFrame) -> list[Check]:
    """Per Delta: the off-diagonal excess follows the two-term law 4 (L + 1) (Theta_ij/(L+1) -
    1/4) = (3/2) ln L + const over depth (coefficient 3/2 within the next-order term's model
    spread, :func:`log_law_table`), and at the largest depth cond(K_inf) lies above its limit
    1 + n/3 (a directional check)."""
    depth = int(summary["depth"].max())
    laws = log_law_table(summary).set_index("delta")
    checks = []
    for row in summary[summary["depth"] == depth].itertuples():
        n = int(row.points)
        law = laws.loc[row.delta]
        checks.append(check_close(
            f"offdiag law/Delta={row.delta:g}",
            f"Theta_ij/(L+1) -> 1/4 like (3/8) ln L / L (Delta={row.delta:g}): coefficient of "
            f"ln L in 4 (L+1) (Theta_ij/(L+1) - 1/4) over L={law.depth_min}..{law.depth_max} "
            f"= {LOG_COEFFICIENT}", predicted=LOG_COEFFICIENT, measured=law.log_coef,
            stderr=law.log_coef_stderr, tolerance=law.model_spread,
            note=f"fit a ln L + b + e ln L/L (stderr from its residuals); tolerance: the "
                 f"change of a with the next term as 1/L instead ({law.log_coef_alt:.4g}); at "
                 f"L={depth} the excess is {row.offdiag_mean - 0.25:.4g} = "
                 f"{(row.offdiag_mean - 0.25) / universal_excess(depth):.3f} x (3/8) ln L/L"))
        checks.append(check_direction(
            f"cond/Delta={row.delta:g}",
            f"cond(K_inf) -> 1 + n/3 = {1 + n / 3:.4g} from above (Delta={row.delta:g}, "
            f"n={n}): at L={depth} cond > 1 + n/3", measured=row.cond, stderr=row.cond_stderr,
            direction="above", threshold=1.0 + n / 3.0,
            note=f"relative excess {100 * row.cond_excess:.2f}%; equicorrelated cond at the "
                 f"mean off-diagonal {equicorrelated_condition(n, row.offdiag_mean):.4g}"))
    return checks


def ordering_check(kernels: pd.DataFrame, depth: int) -> Check:
    """|cond - (1 + n/3)| decreases with Delta at ``depth``: the largest mean (over draws) of
    the paired differences between neighbouring Deltas is < 0 (needs two Deltas or more)."""
    part = kernels[kernels["depth"] == depth]
    n = int(part["points"].iloc[0])
    excess = part.assign(excess=(part["cond"] - 1.0 - n / 3.0).abs()).pivot_table(
        index="seed", columns="delta", values="excess")
    deltas = sorted(excess.columns)
    steps = [mean_stderr(excess[b] - excess[a]) for a, b in itertools.pairwise(deltas)]
    worst = max(range(len(steps)), key=lambda i: steps[i][0])
    return check_direction(
        "faster for larger Delta",
        f"|cond(K_inf) - (1 + n/3)| at L={depth} decreases with Delta: largest change between "
        f"neighbouring Deltas < 0", measured=steps[worst][0], stderr=steps[worst][1],
        direction="below", note="excess by Delta: " + ", ".join(
            f"{d:g}: {excess[d].mean():.3g}" for d in deltas))


def angle_checks(fits: pd.DataFrame) -> list[Check]:
    """The fitted rate beta_1 / k = 1 within ln(l_a) / l_a^2 (l_a: the first fitted layer)."""
    return [check_close(
        f"angle law/Delta={row.delta:g}",
        f"theta_l l -> 3 pi / (2 Delta) (Delta={row.delta:g}): slope of 1/theta_l over "
        f"l={row.fit_start}..{row.depth} (fit with ln l and 1) times 3 pi / (2 Delta) = 1",
        predicted=1.0, measured=row.rate, stderr=row.rate_stderr,
        tolerance=math.log(row.fit_start) / row.fit_start**2,
        note=f"theta_L L 2 Delta / (3 pi) = {row.product:.4f} at L={row.depth}; ln l "
             f"coefficient / slope = {row.log_coefficient:.3f} (derived 1.5); plain-law "
             f"l_0 = {row.plain_l0:.1f}")
        for row in fits.itertuples()]


def inverse_angle_checks(kernels: pd.DataFrame) -> list[Check]:
    """The relative error of Theta_ij ~ C_fit / theta_L decreases with L: the log-log slope
    over the deep depths (all draws pooled) is < 0."""
    deep = kernels[kernels["depth"].isin(deep_depths(sorted(kernels["depth"].unique())))]
    checks = []
    for delta, group in deep.groupby("delta", sort=True):
        fit = power_law_fit_or_nan(group["depth"], group["inverse_angle_error"])
        checks.append(check_direction(
            f"inverse angle/Delta={delta:g}",
            f"off-diagonal Theta_ij ~ C / theta_L(ij) (Delta={delta:g}): its relative error "
            f"decreases with depth, log-log slope over L={group['depth'].min()}.."
            f"{group['depth'].max()} < 0", measured=fit.slope, stderr=fit.slope_stderr,
            direction="below", note="C fitted per kernel by least squares"))
    return checks


def analyze(config: SpectrumConfig, tables: Tables) -> Analysis:
    """Summaries, angle-law fits, figures and the checks of docs/studies/ntk-spectrum.md."""
    kernels, angles = tables["kernels"], tables["angles"]
    summary = summary_table(kernels)
    fits = angle_fit_table(angles, start=max(2, max(config.depths) // 10))
    derived = {"summary": summary, "angle_fits": fits, "log_law": log_law_table(summary)}
    if config.points == 100 and set(REFERENCE_CONDITION) <= set(config.depths):
        derived["reference"] = reference_table(summary)
    figures = {"condition": condition_figure(summary, config.points),
               "eigenvalues": eigenvalue_figure(summary, config.points),
               "angles": angle_figure(angles, fits),
               "inverse_angle": inverse_angle_figure(summary)}
    checks = [diagonal_check(kernels), *limit_checks(summary)]
    if len(config.deltas) > 1:
        checks.append(ordering_check(kernels, config.compare_depth))
    checks += [*angle_checks(fits), *inverse_angle_checks(kernels)]
    return Analysis(tables=derived, figures=figures, checks=checks)


def summary_table(kernels: pd.DataFrame) -> pd.DataFrame:
    """Per (Delta, L): means over the input draws and their standard errors of cond(K_inf),
    n lambda / (L + 1) (limits 3/4 and (n + 3)/4), Theta_ij / (L + 1) and the inverse-angle
    errors and C_fit / (3 pi / (8 Delta))."""
    rows = []
    for (delta, depth), group in kernels.groupby(["delta", "depth"], sort=True):
        n = int(group["points"].iloc[0])
        row: dict[str, float] = {"delta": delta, "depth": depth, "points": n}
        values = {"cond": group["cond"], "offdiag_mean": group["offdiag_mean"],
                  "lambda_min_scaled": n * group["lambda_min"] / (depth + 1),
                  "lambda_max_scaled": n * group["lambda_max"] / (depth + 1),
                  "inverse_angle_error": group["inverse_angle_error"],
                  "inverse_angle_error_theory": group["inverse_angle_error_theory"],
                  "inverse_angle_c_ratio": group["inverse_angle_c_ratio"]}
        for name, column in values.items():
            row[name], row[f"{name}_stderr"] = mean_stderr(column)
        row["cond_excess"] = row["cond"] / (1.0 + n / 3.0) - 1.0
        row["offdiag_scaled_excess"] = 4.0 * depth * (row["offdiag_mean"] - 0.25)
        rows.append(row)
    return pd.DataFrame(rows)


def angle_fit_table(angles: pd.DataFrame, start: int) -> pd.DataFrame:
    """Per Delta, fits of u_l = mean over pairs of 1/theta_l on the layers l >= ``start``,
    each per input draw, then mean and standard error over draws:

    rate = beta_1 / k with u_l ~ beta_1 l + beta_2 ln l + beta_0 and k = 2 Delta / (3 pi)
    (predicted 1), log_coefficient = beta_2 / beta_1 (derived: 3/2), offset = beta_0 / beta_1;
    plain_rate, plain_l0: the same for u_l ~ beta (l + l_0) (docs/theory.md's form);
    product = theta L k at the last layer L, with theta = 1 / u_L (predicted -> 1).
    """
    rows = []
    for delta, group in angles.groupby("delta", sort=True):
        k = 2.0 * delta / (3.0 * math.pi)
        fits = []
        for _, draw in group.groupby("seed"):
            deep = draw[draw["layer"] >= start]
            layer = deep["layer"].to_numpy(dtype=float)
            u = deep["inverse_angle_mean"].to_numpy()
            full = np.linalg.lstsq(np.stack([layer, np.log(layer), np.ones_like(layer)], 1),
                                   u, rcond=None)[0]
            plain = np.polyfit(layer, u, 1)
            fits.append({"rate": full[0] / k, "log_coefficient": full[1] / full[0],
                         "offset": full[2] / full[0], "plain_rate": plain[0] / k,
                         "plain_l0": plain[1] / plain[0],
                         "product": k * layer[-1] / u[-1]})
        row: dict[str, float] = {"delta": delta, "fit_start": start,
                                 "depth": int(group["layer"].max())}
        for name in fits[0]:
            row[name], row[f"{name}_stderr"] = mean_stderr([fit[name] for fit in fits])
        rows.append(row)
    return pd.DataFrame(rows)


def reference_table(summary: pd.DataFrame) -> pd.DataFrame:
    """For n = 100: cond(K_inf) at the depths of docs/theory.md's reference values, per Delta, and
    whether it rounds to the quoted value (to the nearest 5 for "about 50", else to 1)."""
    rows = []
    for depth, value in REFERENCE_CONDITION.items():
        for row in summary[summary["depth"] == depth].itertuples():
            unit = 5.0 if value >= 50 else 1.0
            rows.append({"depth": depth, "reference": value, "delta": row.delta,
                         "cond": row.cond, "cond_stderr": row.cond_stderr,
                         "rounds_to_reference": bool(abs(row.cond - value) <= unit / 2)})
    return pd.DataFrame(rows)
