"""The structure of the concentration bound ||K(theta) - K_inf||_2 <= O((Delta^-2 + sqrt(k) L)
kappa^2 m^-1/2) (docs/theory.md section 4), measured by the ``probes`` sweeps at one width:
its growth in depth L, in the number of outputs k, its independence from n, the ordering of
the activation family by the bound's constant, and the width patterns at equal parameter
count as depth grows (docs/studies/ntk-concentration.md, "Structure checks")."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from widenet.checks import Check, check_close, check_direction
from widenet.studies.common.fits import mean_stderr, power_law_fit

OUTPUTS_FIT_FROM = 4
"""The sqrt(k) law is fitted on k >= 4 only: at small k the k-independent part of the error
(the bound's Delta^-2 term; the readout's block, exactly (h h^T / m_L) (x) I_k) flattens the
curve, since A + B sqrt(k) has local log-log slope (1/2) B sqrt(k) / (A + B sqrt(k))."""
OUTPUTS_SLOPE = 0.5
POINTS_SLOPE = 0.0
LAW_TOLERANCE = 0.1
"""Accepted |slope - predicted| of the k and n laws: a resolution fixed in advance (the same as
the m^-1/2 slope checks), not fitted to a run; the docs give the corrections it covers."""
DEPTH_SLOPE_BOUND = 1.0
"""The bound grows at most linearly in L: the quadratic pattern's log-log slope in L <= 1."""
SWEEP_COLUMNS = {"depth": "depth", "outputs": "outputs", "points": "points"}


def bound_constant(delta: float, kappa: float, outputs: int, depth: int) -> float:
    """The bound's constant (Delta^-2 + sqrt(k) L) kappa^2 (docs/theory.md section 4)."""
    return (delta**-2 + math.sqrt(outputs) * depth) * kappa**2


def sweep_fits(probes: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, activation, pattern) of the depth, outputs and points sweeps: the OLS slope
    of log error against log L, log k or log n pooled over seeds, with its OLS standard error
    (the seeds' scatter); the outputs sweep is fitted on k >= OUTPUTS_FIT_FROM (``slope_all``:
    over every k)."""
    rows = []
    for sweep, column in SWEEP_COLUMNS.items():
        part = probes[probes["sweep"] == sweep]
        for (act, pattern), group in part.groupby(["activation", "pattern"], sort=False):
            fitted = group
            if sweep == "outputs" and group.loc[group["outputs"] >= OUTPUTS_FIT_FROM,
                                                "outputs"].nunique() >= 2:
                fitted = group[group["outputs"] >= OUTPUTS_FIT_FROM]
            fit = power_law_fit(fitted[column], fitted["error"])
            rows.append({"sweep": sweep, "activation": act, "pattern": pattern,
                         "slope": fit.slope, "slope_stderr": fit.slope_stderr,
                         "slope_all": power_law_fit(group[column], group["error"]).slope,
                         "points": fit.points, "x_min": int(fitted[column].min()),
                         "x_max": int(fitted[column].max())})
    return pd.DataFrame(rows, columns=["sweep", "activation", "pattern", "slope",
                                       "slope_stderr", "slope_all", "points", "x_min", "x_max"])


def family_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Per activation of the family sweep: Delta, kappa, the bound's constant C, and the mean
    log error over the networks (all activations evaluated on the same weights) with its
    standard error."""
    part = probes[probes["sweep"] == "family"]
    rows = []
    for act, group in part.groupby("activation", sort=False):
        first = group.iloc[0]
        mean, stderr = mean_stderr(np.log(group["error"]))
        rows.append({"activation": act, "delta": first["delta"], "kappa": first["kappa"],
                     "bound_constant": bound_constant(first["delta"], first["kappa"],
                                                      int(first["outputs"]), int(first["depth"])),
                     "mean_log_error": mean, "stderr": stderr, "networks": len(group)})
    return pd.DataFrame(rows)


def family_slopes(probes: pd.DataFrame) -> list[float]:
    """For each network of the family sweep: the OLS slope of log error against log C across
    the activations evaluated on its weights (C = :func:`bound_constant`)."""
    part = probes[probes["sweep"] == "family"]
    slopes = []
    for _, group in part.groupby("seed"):
        constants = [bound_constant(row.delta, row.kappa, row.outputs, row.depth)
                     for row in group.itertuples()]
        slopes.append(power_law_fit(constants, group["error"]).slope)
    return slopes


def _fit(fits: pd.DataFrame, sweep: str, act: str, pattern: str) -> pd.Series | None:
    match = fits[(fits["sweep"] == sweep) & (fits["activation"] == act)
                 & (fits["pattern"] == pattern)]
    return None if match.empty else match.iloc[0]


def depth_checks(fits: pd.DataFrame) -> list[Check]:
    """Per activation: the quadratic pattern's error grows at most linearly in L (slope <= 1,
    directional), and the constant pattern's grows faster than the quadratic one's
    (difference of slopes > 0, directional), when both patterns were swept."""
    checks = []
    for act in dict.fromkeys(fits.loc[fits["sweep"] == "depth", "activation"]):
        quadratic = _fit(fits, "depth", act, "quadratic")
        constant = _fit(fits, "depth", act, "constant")
        if quadratic is not None:
            checks.append(check_direction(
                f"depth {act}/quadratic",
                "with m_l = l^2 m the bound grows at most linearly in L: log-log slope of "
                f"the error against L <= {DEPTH_SLOPE_BOUND:g} (L = {quadratic['x_min']}.."
                f"{quadratic['x_max']})", measured=quadratic["slope"],
                stderr=quadratic["slope_stderr"], direction="below",
                threshold=DEPTH_SLOPE_BOUND,
                note=f"{quadratic['points']} networks pooled; stderr from the OLS fit"))
        if quadratic is not None and constant is not None:
            checks.append(check_direction(
                f"depth {act}: constant steeper",
                "the quadratic pattern is what keeps the growth in L down: the constant "
                "pattern's log-log slope in L exceeds the quadratic one's (same m)",
                measured=constant["slope"] - quadratic["slope"],
                stderr=math.hypot(constant["slope_stderr"], quadratic["slope_stderr"]),
                direction="above",
                note=f"slopes {constant['slope']:.3f} (constant) and "
                     f"{quadratic['slope']:.3f} (quadratic)"))
    return checks


def law_checks(fits: pd.DataFrame) -> list[Check]:
    """Per activation (quadratic pattern): the error ~ sqrt(k) (slope in k = 1/2 on
    k >= OUTPUTS_FIT_FROM) and is independent of n (slope in n = 0), within LAW_TOLERANCE."""
    checks = []
    for row in fits[fits["sweep"] == "outputs"].itertuples():
        checks.append(check_close(
            f"outputs {row.activation}",
            f"the error grows like sqrt(k) (the bound's sqrt(k) L term): log-log slope in k "
            f"= 1/2 (k = {row.x_min}..{row.x_max})", predicted=OUTPUTS_SLOPE, measured=row.slope,
            tolerance=LAW_TOLERANCE, stderr=row.slope_stderr,
            note=f"{row.points} networks pooled, OLS stderr; slope over every k "
                 f"{row.slope_all:.3f}"))
    for row in fits[fits["sweep"] == "points"].itertuples():
        checks.append(check_close(
            f"points {row.activation}",
            f"at the normalization K = (1/n)[K_theta(x_i, x_j)] the error does not depend on "
            f"n: log-log slope in n = 0 (n = {row.x_min}..{row.x_max})", predicted=POINTS_SLOPE,
            measured=row.slope, tolerance=LAW_TOLERANCE, stderr=row.slope_stderr,
            note=f"{row.points} networks pooled, OLS stderr"))
    return checks


def family_check(table: pd.DataFrame, slopes: list[float]) -> Check:
    """The family is ordered by the bound's constant: the mean over networks of the per-network
    slope of log error against log C is > 0 (directional; 1 if the bound were tight)."""
    mean, stderr = mean_stderr(slopes)
    ordered = table.sort_values("bound_constant")
    listing = ", ".join(f"{row.activation} C={row.bound_constant:.3g} "
                        f"err={math.exp(row.mean_log_error):.3g}"
                        for row in ordered.itertuples())
    return check_direction(
        "family ordering",
        "across phi = a s + b|s| the error grows with the bound's constant "
        "(Delta^-2 + sqrt(k) L) kappa^2: slope of log error against log C > 0 (1 if tight)",
        measured=mean, stderr=stderr, direction="above", predicted=1.0,
        note=f"{len(slopes)} networks, each evaluated with every activation; {listing}")


def equal_params_trend_checks(equal: pd.DataFrame) -> list[Check]:
    """Per activation with two or more depths in ``equal_params``: the log ratio
    quadratic/constant at equal parameter count grows from the shallowest to the deepest L
    (directional), against the sqrt(sum_l 1/m_l) heuristic's prediction."""
    checks = []
    for act, group in equal.groupby("activation", sort=False):
        if group["depth"].nunique() < 2:
            continue
        low, high = group.loc[group["depth"].idxmin()], group.loc[group["depth"].idxmax()]
        checks.append(check_direction(
            f"equal params {act}: constant gains with depth",
            f"at equal parameter count the constant pattern's advantage over the quadratic one "
            f"grows with depth: log(error_quadratic / error_constant) at L = {high['depth']} "
            f"minus at L = {low['depth']} > 0", measured=high["log_ratio"] - low["log_ratio"],
            stderr=math.hypot(high["stderr"], low["stderr"]), direction="above",
            predicted=high["log_ratio_heuristic"] - low["log_ratio_heuristic"],
            note=f"log ratios {low['log_ratio']:.3f} and {high['log_ratio']:.3f}; predicted "
                 "by error ~ sqrt(sum_l 1/m_l) at equal P (a heuristic, not the theorem)"))
    return checks


def heuristic_log_ratio(depth: int, params: float, dim: int, outputs: int) -> float:
    """(1/2) log(S_quadratic / S_constant), S = sum_l 1/m_l for the widths m_l = c_l m whose
    bias-free parameter count d m_1 + sum_l m_l m_(l+1) + m_L k equals ``params`` (c_l = 1 for
    the constant pattern, l^2 for the quadratic one): the error ratio at equal P if each layer
    added a share proportional to 1/m_l to the variance of K."""
    sums = {}
    for name, coefficients in (("constant", [1.0] * depth),
                               ("quadratic", [float(i * i) for i in range(1, depth + 1)])):
        a = sum(c * d for c, d in itertools.pairwise(coefficients))
        b = dim * coefficients[0] + outputs * coefficients[-1]
        m = params / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)
        sums[name] = sum(1.0 / (c * m) for c in coefficients)
    return 0.5 * math.log(sums["quadratic"] / sums["constant"])


def structure_checks(probes: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[Check]]:
    """The structure sweeps' tables (``sweep_fits``, ``family``) and checks."""
    fits = sweep_fits(probes)
    tables, checks = {"sweep_fits": fits}, depth_checks(fits) + law_checks(fits)
    if (probes["sweep"] == "family").any():
        family = family_table(probes)
        tables["family"] = family
        checks.append(family_check(family, family_slopes(probes)))
    return tables, checks

