"""Analysis of the ``edge-of-stability`` study: per-run summaries and checks (figures in
:mod:`widenet.studies.edge_of_stability.figures`). See docs/studies/edge-of-stability.md."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import SIGNIFICANCE, Check, check_close, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import all_diverged, finite_mean_stderr, mean_stderr
from widenet.studies.edge_of_stability.config import REACHED, EoSConfig
from widenet.studies.edge_of_stability.figures import (
    beyond_figure,
    beyond_trajectories_figure,
    eos_loss_figure,
    eos_sharpness_figure,
    taylor_figure,
)

MEDIAN_STDERR = math.sqrt(math.pi / 2)
"""The standard error of a sample median is about sqrt(pi/2) std / sqrt(k) (normal samples)."""
MIN_BATCHES = 4
"""The fewest batches :func:`median_stderr` takes a batch-medians standard error from (a window
of at least MIN_BATCHES^2 = 16 measurements)."""
EDGE_BAND = 0.25
"""The widest accepted |median of S / (2/lr) - 1|, whatever S's fluctuation: S that strays
further from the edge does not hover there, and a noisier S must not pass more easily. It is
also the reach of Cohen et al.'s "just above 2/lr" for :data:`ABOVE_EDGE_FINDING`."""

ABOVE_EDGE_FINDING = ("finding: S hovers above 2/lr by more than its own fluctuation (Cohen et "
                      "al.: 'just above 2/lr'); see the study's page")
"""The note of an MSE edge check that fails because S settles above the edge, S still coming
down from its overshoot at the end of the run: documented, with the measured numbers, in
docs/studies/edge-of-stability.md (cross-entropy's far larger overshoot in its short large-loss
phase is a plain fail, explained there too)."""


def median_stderr(values: np.ndarray) -> float:
    """The standard error of the median of k time-ordered, autocorrelated measurements of one
    run: the larger of the independent-values formula and a batch-medians estimate,

        stderr = max(sqrt(pi/2) sd / sqrt(k), sd(m_1, ..., m_b; ddof=1) / sqrt(b)),

    where the last b L values are cut into b = floor(sqrt(k)) consecutive batches of
    L = floor(k / b) values (the k - b L earliest are left out of the batches only) and m_j is
    the median of batch j. Batches long against the series' correlation time have nearly
    independent medians, each with about b times the variance of the whole window's median, so
    the batch term covers the autocorrelation that the first term (exact for independent
    normal values) ignores. With the study's 4-8 batches the batch term alone is noisy and
    biased low (for independent values it falls below half the true standard error in about 1
    window of 5 at k = 16), hence the maximum: never less than the independent-values figure.
    Below MIN_BATCHES batches (k < 16) only the first term is used. It remains a lower bound
    for a series that drifts across the window (its batch medians are correlated at every
    batch length). NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    k = len(values)
    if k < 2:
        return math.nan
    independent = MEDIAN_STDERR * float(values.std(ddof=1)) / math.sqrt(k)
    batches = math.isqrt(k)
    if batches < MIN_BATCHES:
        return independent
    length = k // batches
    medians = np.median(values[k - batches * length:].reshape(batches, length), axis=1)
    return max(independent, float(medians.std(ddof=1)) / math.sqrt(batches))


def midpoint_sharpening(measured: pd.DataFrame, t_end: float, s0: float
                        ) -> tuple[float, float]:
    """(t_mid, S(t_mid) / S_0): t_mid the last measurement step in (0, t_end / 2], t_end the
    edge step t_edge (the end of the judged phase when the edge is never reached): how far S
    has come halfway to the edge (reported, not checked: S may first dip below S_0 and rise
    later). NaN for both when no measurement lies in (0, t_end / 2] (the phase is too short)."""
    steps = measured["step"]
    early = measured["sharpness"][(steps > 0) & (steps <= t_end / 2)]
    if early.empty:
        return math.nan, math.nan
    return float(steps[early.index[-1]]), float(early.iloc[-1] / s0)


def judged_phase_end(curve: pd.DataFrame, loss_name: str, large_loss_fraction: float) -> int:
    """The last step of the phase in which a part-1 run is judged. Cross-entropy: the
    large-loss phase, every step before the loss first falls below ``large_loss_fraction`` x
    its initial value (Cohen et al.: as the cross-entropy loss vanishes late in training, the
    softmax saturates and S falls, so sharpening and the edge are claimed only before that);
    MSE: the whole run. ``curve`` holds one run, sorted by step."""
    end = int(curve["step"].max())
    if loss_name != "cross_entropy":
        return end
    losses = curve["loss"].to_numpy()
    small = np.flatnonzero(~(losses >= large_loss_fraction * losses[0]))
    return int(curve["step"].iloc[small[0] - 1]) if len(small) else end


def eos_summary(curves: pd.DataFrame, runs: pd.DataFrame, late_fraction: float,
                large_loss_fraction: float) -> pd.DataFrame:
    """Per part-1 run, within its judged phase (steps up to ``phase_end``,
    :func:`judged_phase_end`): t_edge, the first step with S >= REACHED * 2/lr; the EoS window,
    the last ``late_fraction`` of the steps from t_edge to ``phase_end``, and there the median
    of S/(2/lr) with its standard error (batch medians, :func:`median_stderr`) and the standard
    deviation of S/(2/lr) (the fluctuation of S about its level); over the EoS phase (t_edge
    to ``phase_end``) the number of steps s with loss_{s+1} > loss_s and the loss at t_edge
    and at ``phase_end``; the peak of S/(2/lr) over the judged phase; and S(t_mid) / S_0
    halfway to the edge (:func:`midpoint_sharpening`)."""
    rows = []
    for _, run in runs.iterrows():
        curve = curves[(curves["loss_name"] == run["loss_name"])
                       & (curves["lr_factor"] == run["lr_factor"])].sort_values("step")
        phase_end = judged_phase_end(curve, run["loss_name"], large_loss_fraction)
        curve = curve[curve["step"] <= phase_end]
        measured = curve.dropna(subset=["sharpness"])
        ratio = measured["sharpness"] / run["edge"]
        hits = measured["step"][ratio >= REACHED]
        t_edge = int(hits.iloc[0]) if len(hits) else None
        t_mid, sharpening = midpoint_sharpening(
            measured, t_edge if t_edge is not None else phase_end, run["sharpness_init"])
        row: dict[str, Any] = {**run.to_dict(), "phase_end": phase_end,
                               "loss_phase_end": float(curve["loss"].iloc[-1]),
                               "reached": t_edge is not None,
                               "t_edge": t_edge if t_edge is not None else math.nan,
                               "peak_ratio": float(ratio.max()),
                               "sharpening_step": t_mid, "sharpening": sharpening}
        if t_edge is not None:
            start = t_edge + (1 - late_fraction) * (phase_end - t_edge)
            window = ratio[measured["step"] >= start]
            spread = float(window.std(ddof=1)) if len(window) > 1 else math.nan
            losses = curve[curve["step"] >= t_edge]["loss"].to_numpy()
            row.update(window_start=start, ratio_median=float(window.median()),
                       ratio_std=spread,
                       ratio_stderr=median_stderr(window.to_numpy()),
                       ratio_points=len(window),
                       loss_increases=int(np.sum(losses[1:] > losses[:-1])),
                       loss_edge=float(losses[0]), loss_end=float(losses[-1]))
        rows.append(row)
    return pd.DataFrame(rows)


def phase_text(run: pd.Series, large_loss_fraction: float) -> str:
    """Where a part-1 run is judged, in words (for the checks' notes)."""
    if run["loss_name"] != "cross_entropy":
        return f"the whole run ({int(run['steps'])} steps)"
    return (f"the large-loss phase, steps 0..{int(run['phase_end'])} (loss >= "
            f"{large_loss_fraction:g} x initial; loss there {run['loss_phase_end']:.3g})")


def eos_checks(summary: pd.DataFrame, large_loss_fraction: float) -> list[Check]:
    """Per part-1 run, within its judged phase (:func:`judged_phase_end`): progressive
    sharpening, S rising from S_0 = lr_factor * 2/lr to the edge (peak of S/(2/lr) >=
    REACHED); where the edge was reached, S/(2/lr) settling at 1: the window's median within
    SIGNIFICANCE standard deviations of S/(2/lr)'s own fluctuation from 1, at most EDGE_BAND,
    and the fluctuation itself within EDGE_BAND (S that jumps about does not hover, whatever
    its median); and a non-monotone but decreasing loss in the EoS phase. A run that diverged
    gets inconclusive checks: its sharpness past the blow-up measures the blow-up, not the
    edge."""
    checks = []
    for _, run in summary.iterrows():
        tag = f"{run['loss_name']} lr={run['lr_factor']:g}*2/S0"
        edge_claim = "S reaches 2/lr and hovers there"
        if run["status"] != "completed":
            note = f"the run {run['status']}: nothing to judge"
            checks += [check_direction(f"progressive sharpening ({tag})",
                                       "S rises from S_0 to the edge", measured=math.nan,
                                       direction="above", threshold=REACHED, predicted=1.0,
                                       note=note),
                       check_close(f"edge of stability ({tag})", edge_claim, predicted=1.0,
                                   measured=math.nan, tolerance=math.nan, note=note)]
            continue
        phase = phase_text(run, large_loss_fraction)
        checks.append(check_direction(
            f"progressive sharpening ({tag})", f"S rises from S_0 = {run['lr_factor']:g} * 2/lr "
            f"to the edge: the peak of S / (2/lr) reaches {REACHED}",
            measured=run["peak_ratio"], direction="above", threshold=REACHED, predicted=1.0,
            note=f"judged over {phase}; S_0 = {run['sharpness_init']:.4g}, edge 2/lr = "
                 f"{run['edge']:.4g}; halfway (step {run['sharpening_step']:.0f}) S/S_0 = "
                 f"{run['sharpening']:.3g}"))
        if not run["reached"]:
            checks.append(check_close(
                f"edge of stability ({tag})", edge_claim, predicted=1.0, measured=math.nan,
                tolerance=math.nan, note=f"S never reached {REACHED} * 2/lr in {phase}"))
            continue
        edge = check_close(
            f"edge of stability ({tag})", "S settles at 2/lr: the median of S / (2/lr) over "
            f"the EoS window is 1 within {SIGNIFICANCE:g} standard deviations of S / (2/lr)'s "
            f"own fluctuation there (at most {EDGE_BAND})", predicted=1.0,
            measured=run["ratio_median"], stderr=run["ratio_stderr"],
            tolerance=min(SIGNIFICANCE * run["ratio_std"], EDGE_BAND),
            note=f"{int(run['ratio_points'])} measurements from step {run['window_start']:.0f} "
                 f"(fluctuation std {run['ratio_std']:.3g}); edge reached at step "
                 f"{int(run['t_edge'])}; judged over {phase}; {_stderr_text(run)}")
        if edge.verdict == "pass" and SIGNIFICANCE * run["ratio_std"] > EDGE_BAND:
            edge = replace(edge, verdict="fail", note=(
                f"S does not hover: its fluctuation {run['ratio_std']:.3g} spreads over more "
                f"than +-{EDGE_BAND} around its median; {edge.note}"))
        if (run["loss_name"] == "mse" and edge.verdict == "fail"
                and edge.high < edge.measured <= 1.0 + EDGE_BAND):  # just above the edge
            edge = replace(edge, note=f"{ABOVE_EDGE_FINDING}; {edge.note}")
        checks.append(edge)
        checks.append(check_direction(
            f"non-monotone loss ({tag})", "in the EoS phase (from the edge to the end of the "
            "judged phase) the loss rises at some steps: number of steps with "
            "loss_{s+1} > loss_s", measured=run["loss_increases"], direction="above",
            threshold=1.0))
        checks.append(check_direction(
            f"loss still falls ({tag})", "over the EoS phase the loss falls overall: "
            "loss at its end / loss(t_edge) < 1",
            measured=run["loss_end"] / run["loss_edge"], direction="below", threshold=1.0))
    return checks


def _stderr_text(run: pd.Series) -> str:
    """How the edge check's standard error of the median was taken (:func:`median_stderr`)."""
    if run["ratio_points"] < MIN_BATCHES**2:
        return ("stderr of the median as for independent points (too few for batch medians): "
                "a lower bound")
    return "stderr of the median from batch medians"


def beyond_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """The part-2 runs with c > 1, the scaled and plain arm of each (replicate, c) side by side
    (columns suffixed _scaled and _plain), indexed by (replicate, c)."""
    past = runs[runs["c"] > 1]
    scaled = past[past["scaled"]].set_index(["replicate", "c"])
    plain = past[~past["scaled"]].set_index(["replicate", "c"])
    return scaled.merge(plain, left_index=True, right_index=True, suffixes=("_scaled", "_plain"))


def comparable_factors(pairs: pd.DataFrame) -> list[float]:
    """The c at which both arms completed for every replicate (a diverged run's last values
    measure its blow-up, not the trained network)."""
    done = (pairs["status_scaled"] == "completed") & (pairs["status_plain"] == "completed")
    replicates = pairs.index.get_level_values("replicate").nunique()
    counts = done.groupby(level="c").sum()
    return [float(c) for c, n in counts.items() if n == replicates]


def replicate_means(pairs: pd.DataFrame, factors: list[float], gap: pd.Series
                    ) -> tuple[float, float]:
    """The mean over replicates r of g_r = mean over c in ``factors`` of ``gap`` at (r, c), and
    its standard error std_r(g_r) / sqrt(R) over the R independent initializations (NaN, so
    inconclusive, with one replicate; (NaN, NaN) when ``factors`` is empty)."""
    if not factors:
        return math.nan, math.nan
    chosen = gap[pairs.index.get_level_values("c").isin(factors)]
    return mean_stderr(chosen.groupby(level="replicate").mean().to_numpy())


def stable_factors(runs: pd.DataFrame) -> pd.DataFrame:
    """Per initialization r, the largest stable multiple c* of the classical limit in each arm:
    the largest c of the grid below the first c (ascending) whose run diverged or had a loss
    explosion; NaN when already the smallest c is unstable, and the grid's largest c (a lower
    bound, ``censored``) when every c is stable. ``log2_gain`` = log2(c*_scaled / c*_plain)."""
    rows = []
    for replicate, group in runs.groupby("replicate", sort=True):
        row: dict[str, Any] = {"replicate": replicate}
        for scaled, arm in ((False, "plain"), (True, "scaled")):
            ordered = group[group["scaled"] == scaled].sort_values("c")
            stable = ((ordered["status"] == "completed") & (ordered["explosions"] == 0)).to_numpy()
            factors = ordered["c"].to_numpy(dtype=float)
            first_unstable = int(np.argmin(stable)) if not stable.all() else len(stable)
            row[f"c_star_{arm}"] = factors[first_unstable - 1] if first_unstable else math.nan
            row[f"censored_{arm}"] = bool(stable.all())
        row["log2_gain"] = math.log2(row["c_star_scaled"] / row["c_star_plain"])
        rows.append(row)
    return pd.DataFrame(rows)


def stable_factor_check(runs: pd.DataFrame) -> Check:
    """The depthwise scaling raises the largest stable c: mean over initializations of
    log2(c*_scaled / c*_plain) > 0 (directional, stderr over initializations)."""
    table = stable_factors(runs)
    mean, stderr = finite_mean_stderr(table["log2_gain"].to_numpy())
    grid = ", ".join(f"{c:g}" for c in sorted(runs["c"].unique()))
    censored = int(table["censored_scaled"].sum() + table["censored_plain"].sum())
    return check_direction(
        "scaling raises the stable lr", "the largest multiple c of the classical limit 2/S_0 at "
        "which GD completes without a loss explosion is larger with the normalized update "
        "scaling: mean over initializations of log2(c*_scaled / c*_plain) > 0",
        measured=mean, stderr=stderr, direction="above", strict=True,
        note=f"c grid {grid}; c* plain "
             f"{', '.join(f'{c:g}' for c in table['c_star_plain'])}, scaled "
             f"{', '.join(f'{c:g}' for c in table['c_star_scaled'])} (by initialization); "
             f"{censored} stable at every c (c* a lower bound); explosions with scaling "
             f"{int(runs[runs['scaled']]['explosions'].sum())}, plain "
             f"{int(runs[~runs['scaled']]['explosions'].sum())}")


def beyond_checks(runs: pd.DataFrame) -> list[Check]:
    """Part 2: the scaling raises the largest stable c (:func:`stable_factor_check`); over the
    factors c > 1, the final sharpness and last-layer participation ratio of each scaled run
    against the plain run of the same initialization and c, averaged over the c where both arms
    completed for every initialization, with standard errors over the initializations."""
    pairs = beyond_pairs(runs)
    factors = comparable_factors(pairs)
    seeds = pairs.index.get_level_values("replicate").nunique()
    checks = [stable_factor_check(runs)]
    where = (f"c = {', '.join(f'{c:g}' for c in factors) or 'none'} (both arms completed for "
             f"all {seeds} initializations); stderr over initializations")
    log_ratio = np.log10(pairs["raw_sharpness_final_scaled"] / pairs["raw_sharpness_final_plain"])
    mean, stderr = replicate_means(pairs, factors, log_ratio)
    checks.append(check_direction(
        "sharpness regularized", "with the scaling the final sharpness lambda_max(H) is lower "
        "than plain GD's from the same initialization at the same c: mean over "
        "initializations and c > 1 of log10(S_T scaled / S_T plain) < 0",
        measured=mean, direction="below", stderr=stderr,
        note=f"{where}; last measurement of each run"))
    mean, stderr = replicate_means(pairs, factors,
                                   pairs["rank_final_scaled"] - pairs["rank_final_plain"])
    checks.append(check_direction(
        "soft rank higher", "with the scaling the last hidden layer's participation ratio "
        "(sum s^2)^2 / sum s^4 ends higher than plain GD's from the same initialization: mean "
        "over initializations and c > 1 of PR scaled - PR plain > 0",
        measured=mean, direction="above", stderr=stderr,
        note=f"{where}; features on all training points"))
    return checks


TAYLOR_ORDER = 4
"""The remainder L(theta') - L(theta) - (c1 + c2 + c3) of a step of size lr is O(lr^4)."""


def taylor_slopes(identity: pd.DataFrame) -> pd.DataFrame:
    """Per replicate, the local log-log slopes b_k = log2(|R(lr_k)| / |R(lr_k / 2)|) of the
    remainder R over the halving steps of table ``taylor_identity``, and the Richardson
    extrapolation of the last two: b = 2 b_K - b_{K-1} (a deviation from the limit that halves
    with lr, as the next order's relative size ~ lr does, cancels), with ``correction`` =
    |b_K - b_{K-1}|, the size of that extrapolation."""
    rows = []
    for replicate, group in identity.groupby("replicate", sort=True):
        remainder = group.sort_values("lr", ascending=False)["remainder"].abs().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            local = np.log2(remainder[:-1] / remainder[1:])
        rows.append({"replicate": replicate, "local_slopes": ", ".join(f"{b:.4f}" for b in local),
                     "slope_last": float(local[-1]), "slope": float(2 * local[-1] - local[-2]),
                     "correction": float(abs(local[-1] - local[-2]))})
    return pd.DataFrame(rows)


def taylor_check(identity: pd.DataFrame) -> Check:
    """The Taylor identity Delta L = c1 + c2 + c3 + O(lr^4): the extrapolated slope of log |R|
    against log lr (:func:`taylor_slopes`) is 4, mean over replicates ± their standard error,
    within the mean size of the extrapolation (the part of the slope the data do not resolve)."""
    slopes = taylor_slopes(identity)
    mean, stderr = mean_stderr(slopes["slope"].to_numpy())
    fractions = sorted(identity["fraction"].unique())
    return check_close(
        "Taylor identity", "one GD step at initialization: L(theta') - L(theta) = c1 + c2 + c3 "
        "+ O(lr^4), so the remainder's log-log slope against lr (steps lr = "
        f"{fractions[-1]:g}..{fractions[0]:g} x 2/S_0, halving) tends to {TAYLOR_ORDER}",
        predicted=float(TAYLOR_ORDER), measured=mean, stderr=stderr,
        tolerance=float(slopes["correction"].mean()),
        note=f"{len(slopes)} initializations; Richardson-extrapolated from the last two local "
             f"slopes (last: {slopes['slope_last'].mean():.4f}); tolerance: the size of that "
             "extrapolation")


def analyze(config: EoSConfig, tables: Tables) -> Analysis:
    """The part-1 summary and checks, the part-2 checks and the five figures; ``diverged``
    when every part-1 run diverged (part 2 sweeps into divergence on purpose)."""
    summary = eos_summary(tables["eos_curves"], tables["eos_runs"], config.late_fraction,
                          config.large_loss_fraction)
    beyond = tables["beyond_runs"]
    figures = {"sharpness": eos_sharpness_figure(tables["eos_curves"], summary),
               "loss": eos_loss_figure(tables["eos_curves"]),
               "beyond": beyond_figure(beyond, config.explosion_ratio),
               "beyond_trajectories": beyond_trajectories_figure(tables["beyond_curves"]),
               "taylor": taylor_figure(tables["beyond_curves"], beyond)}
    diverged = all_diverged(tables["eos_runs"]["status"], "part-1 runs",
                            "lower lr_factors")
    derived = {"eos_summary": summary, "beyond_runs": beyond}
    checks = eos_checks(summary, config.large_loss_fraction) + beyond_checks(beyond)
    if "taylor_identity" in tables:  # absent from runs stored before the Taylor task existed
        derived["taylor_identity"] = tables["taylor_identity"]
        derived["taylor_slopes"] = taylor_slopes(tables["taylor_identity"])
        checks.append(taylor_check(tables["taylor_identity"]))
    return Analysis(tables=derived, figures=figures, checks=checks,
                    diverged=diverged)
