"""Analysis of the ``edge-of-stability`` study: per-run summaries and checks (figures in
:mod:`widenet.studies._edge_of_stability_figures`). See docs/studies/edge-of-stability.md."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import Check, check_interval
from widenet.studies._edge_of_stability_figures import (
    beyond_figure,
    beyond_trajectories_figure,
    eos_loss_figure,
    eos_sharpness_figure,
    taylor_figure,
)
from widenet.studies.base import Analysis, Tables
from widenet.studies.fits import mean_stderr

REACHED = 0.95
"""S has reached the edge at the first measurement with S >= REACHED * 2/lr (lr factors stay
below it, so the start S_0 = lr_factor * 2/lr does not count)."""
EOS_BAND = (0.85, 1.25)
"""Accepted median of S / (2/lr) in the EoS window (docs, "Checks")."""
MEDIAN_STDERR = math.sqrt(math.pi / 2)
"""The standard error of a sample median is about sqrt(pi/2) std / sqrt(k) (normal samples)."""


def eos_summary(curves: pd.DataFrame, runs: pd.DataFrame, late_fraction: float) -> pd.DataFrame:
    """Per part-1 run: t_edge, the first step with S >= REACHED * 2/lr; the EoS window, the
    last ``late_fraction`` of the steps from t_edge to the end, and there the median of
    S/(2/lr) with its standard error; over the whole EoS phase (t_edge to the end) the number
    of steps s with loss_{s+1} > loss_s and the loss at t_edge and at the end; and the
    sharpening ratio S(t_early) / S_0, t_early the last measurement up to t_edge (up to half
    the run when the edge is never reached)."""
    rows = []
    for _, run in runs.iterrows():
        curve = curves[(curves["loss_name"] == run["loss_name"])
                       & (curves["lr_factor"] == run["lr_factor"])].sort_values("step")
        measured = curve.dropna(subset=["sharpness"])
        ratio = measured["sharpness"] / run["edge"]
        hits = measured["step"][ratio >= REACHED]
        end = int(curve["step"].max())
        t_edge = int(hits.iloc[0]) if len(hits) else None
        early_end = t_edge if t_edge is not None else end / 2
        early = measured["sharpness"][measured["step"] <= early_end]
        row: dict[str, Any] = {**run.to_dict(), "reached": t_edge is not None,
                               "t_edge": t_edge if t_edge is not None else math.nan,
                               "sharpening": float(early.iloc[-1] / run["sharpness_init"])}
        if t_edge is not None:
            start = t_edge + (1 - late_fraction) * (end - t_edge)
            window = ratio[measured["step"] >= start]
            losses = curve[curve["step"] >= t_edge]["loss"].to_numpy()
            row.update(window_start=start, ratio_median=float(window.median()),
                       ratio_stderr=float(MEDIAN_STDERR * window.std(ddof=1)
                                          / math.sqrt(len(window))) if len(window) > 1 else 0.0,
                       ratio_points=len(window),
                       loss_increases=int(np.sum(losses[1:] > losses[:-1])),
                       loss_edge=float(losses[0]), loss_end=float(losses[-1]))
        rows.append(row)
    return pd.DataFrame(rows)


def eos_checks(summary: pd.DataFrame) -> list[Check]:
    """Per part-1 run: progressive sharpening; where the edge was reached, S/(2/lr) in
    EOS_BAND, and a non-monotone but decreasing loss in the EoS phase."""
    checks = []
    for _, run in summary.iterrows():
        tag = f"{run['loss_name']} lr={run['lr_factor']:g}*2/S0"
        checks.append(check_interval(
            f"progressive sharpening ({tag})", "S rises before the edge: S at the end of the "
            "early phase (the edge, or half the run) / S_0 > 1", measured=run["sharpening"],
            low=1.0, predicted=1.0, note=f"S_0 = {run['sharpness_init']:.4g}, edge 2/lr = "
                                f"{run['edge']:.4g}"))
        if not run["reached"]:
            checks.append(check_interval(
                f"edge of stability ({tag})", "S reaches 2/lr and hovers there",
                measured=math.nan, low=EOS_BAND[0], high=EOS_BAND[1], predicted=1.0,
                note=f"S never reached {REACHED} * 2/lr in {int(run['steps'])} steps"))
            continue
        checks.append(check_interval(
            f"edge of stability ({tag})", "S hovers at 2/lr: median of S / (2/lr) over the EoS "
            "window", measured=run["ratio_median"], low=EOS_BAND[0], high=EOS_BAND[1],
            predicted=1.0, stderr=run["ratio_stderr"],
            note=f"{int(run['ratio_points'])} measurements from step {run['window_start']:.0f}; "
                 f"edge reached at step {int(run['t_edge'])}; stderr of the median"))
        checks.append(check_interval(
            f"non-monotone loss ({tag})", "in the EoS phase (from the edge to the end) the loss "
            "rises at some steps: number of steps with loss_{s+1} > loss_s",
            measured=run["loss_increases"], low=1.0, predicted=1.0))
        checks.append(check_interval(
            f"loss still falls ({tag})", "over the EoS phase the loss falls overall: "
            "loss_end / loss(t_edge) < 1",
            measured=run["loss_end"] / run["loss_edge"], high=1.0, predicted=1.0))
    return checks


def beyond_checks(runs: pd.DataFrame) -> list[Check]:
    """Part 2, over the factors c > 1: no loss explosion with the scaling; final sharpness and
    last-layer participation ratio of the scaled runs against the plain runs, over the c
    where both arms completed (a diverged run's last values measure its blow-up)."""
    past = runs[runs["c"] > 1]
    scaled = past[past["scaled"]].set_index("c")
    plain = past[~past["scaled"]].set_index("c")
    checks = [check_interval(
        "no explosions with scaling", "with the normalized update scaling the loss never "
        "jumps (> explosion_ratio x in one step) nor diverges at lr = c * 2/S_0, c > 1: total "
        "explosions over those runs", measured=float(scaled["explosions"].sum()), low=0.0,
        high=0.0, predicted=0.0,
        note=f"c = {', '.join(f'{c:g}' for c in scaled.index)}; plain GD: "
             f"{int(plain['explosions'].sum())} explosions, "
             f"{int((plain['status'] != 'completed').sum())} diverged")]
    both = [c for c in scaled.index if c in plain.index
            and scaled.loc[c, "status"] == plain.loc[c, "status"] == "completed"]
    logs = [math.log10(scaled.loc[c, "raw_sharpness_final"] / plain.loc[c, "raw_sharpness_final"])
            for c in both]
    mean, stderr = mean_stderr(logs) if logs else (math.nan, 0.0)
    checks.append(check_interval(
        "sharpness regularized", "with the scaling the final sharpness lambda_max(H) is lower "
        "than plain GD's at the same c: mean over c > 1 of log10(S_T scaled / S_T plain) < 0",
        measured=mean, high=0.0, predicted=0.0, stderr=stderr,
        note=f"c = {', '.join(f'{c:g}' for c in both) or 'none'} with both arms "
             "completed; last measurement of each run"))
    gaps = [scaled.loc[c, "rank_final"] - plain.loc[c, "rank_final"] for c in both]
    mean, stderr = mean_stderr(gaps) if gaps else (math.nan, 0.0)
    checks.append(check_interval(
        "soft rank higher", "with the scaling the last hidden layer's participation ratio "
        "(sum s^2)^2 / sum s^4 ends higher: mean over c > 1 of PR scaled - PR plain > 0",
        measured=mean, low=0.0, predicted=0.0, stderr=stderr,
        note=f"c = {', '.join(f'{c:g}' for c in both) or 'none'} with both arms "
             "completed; features on all training points"))
    return checks


def analyze(config: Any, tables: Tables) -> Analysis:
    """The part-1 summary and checks, the part-2 checks and the five figures."""
    summary = eos_summary(tables["eos_curves"], tables["eos_runs"], config.late_fraction)
    beyond = tables["beyond_runs"]
    figures = {"sharpness": eos_sharpness_figure(tables["eos_curves"], summary),
               "loss": eos_loss_figure(tables["eos_curves"]),
               "beyond": beyond_figure(beyond, config.explosion_ratio),
               "beyond_trajectories": beyond_trajectories_figure(tables["beyond_curves"]),
               "taylor": taylor_figure(tables["beyond_curves"], beyond)}
    return Analysis(tables={"eos_summary": summary, "beyond_runs": beyond},
                    figures=figures, checks=eos_checks(summary) + beyond_checks(beyond))
