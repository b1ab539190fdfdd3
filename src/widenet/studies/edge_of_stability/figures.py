"""The figures of the ``edge-of-stability`` study (see docs/studies/edge-of-stability.md).

Measurements are solid lines or markers; the theory (the edge 2/lr, c = 1) is dashed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.figures import THEORY_STYLE, caption, clip_runaway_lines, label, new_figure

ARMS = ((False, "plain GD", "C0", "o", 1 / 1.06), (True, "normalized update scaling", "C3", "s",
                                                   1.06))
"""(scaled flag, legend text, colour, marker, x offset factor) of the two arms of part 2: the
arms are drawn with different markers a little apart along the log c axis, so that equal values
do not hide one arm under the other."""


def eos_sharpness_figure(curves: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Sharpness S against the GD step, one panel per loss, one colour per learning rate, with
    that lr's edge 2/lr dashed in the same colour, the EoS window's start dotted and, where the
    run is judged only in its large-loss phase (cross-entropy), that phase's end dash-dotted."""
    losses = list(dict.fromkeys(summary["loss_name"]))
    figure, axes = new_figure(len(losses))
    for ax, loss in zip(axes[0], losses, strict=True):
        peaks = []
        for i, (_, run) in enumerate(summary[summary["loss_name"] == loss].iterrows()):
            curve = curves[(curves["loss_name"] == loss)
                           & (curves["lr_factor"] == run["lr_factor"])].dropna(
                               subset=["sharpness"])
            color = f"C{i % 10}"
            ax.plot(curve["step"], curve["sharpness"], color=color,
                    label=f"S, lr = {run['lr_factor']:g} * 2/S0")
            peaks.append(float(curve["sharpness"].max()) if len(curve) else np.nan)
            ax.axhline(run["edge"], color=color, linestyle="--", linewidth=1.2,
                       label=f"2/lr = {run['edge']:.3g}")
            if run["reached"]:
                ax.axvline(run["window_start"], color=color, linestyle=":", linewidth=0.8)
            if len(curve) and run["phase_end"] < curve["step"].max():
                ax.axvline(run["phase_end"], color=color, linestyle="-.", linewidth=0.8)
        clip_runaway_lines(ax, peaks)
        label(ax, f"{loss}: sharpness (dotted: EoS window starts; dash-dot: large loss ends)",
              "GD step s",
              r"$S = \lambda_{max}(\nabla^2 L)$")
        ax.legend(fontsize=7)
    return caption(figure, "Sharpness S along gradient descent, one colour per learning rate: "
                   "Cohen et al. predict S rises (progressive sharpening) until it reaches the "
                   "dashed edge 2/lr of its colour, then hovers there (edge of stability); with "
                   "cross-entropy only while the loss is large (dash-dot: that phase ends).")


def eos_loss_figure(curves: pd.DataFrame) -> Figure:
    """The training loss at every GD step (log y), one panel per loss, one line per lr."""
    losses = list(dict.fromkeys(curves["loss_name"]))
    figure, axes = new_figure(len(losses))
    for ax, loss in zip(axes[0], losses, strict=True):
        for i, (factor, curve) in enumerate(curves[curves["loss_name"] == loss]
                                            .groupby("lr_factor", sort=True)):
            ax.plot(curve["step"], curve["loss"], color=f"C{i % 10}", linewidth=0.9,
                    label=f"lr = {factor:g} * 2/S0")
        label(ax, f"{loss}: training loss", "GD step s", "L(theta_s)", logy=True)
        ax.legend(fontsize=7)
    return caption(figure, "The training loss at every step: at the edge of stability it "
                   "should go on falling overall while rising at some steps (non-monotone), "
                   "unlike the monotone descent the classical step-size rule lr < 2/S assumes.")


def first_replicate(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a part-2 table from its first initialization (smallest ``replicate``)."""
    return table[table["replicate"] == table["replicate"].min()]


def beyond_figure(runs: pd.DataFrame, explosion_ratio: float) -> Figure:
    """Part 2 against c = lr / (2/S_0) (log x), one line per arm and initialization: left, the
    final loss (log y; a diverged run is an x at the top); right, the number of loss explosions
    (one step's loss > ratio x the previous, or divergence); c = 1, the classical limit,
    dashed."""
    figure, axes = new_figure(2)
    left, right = axes[0]
    top = float(runs["loss_init"].max()) * 10
    for scaled, text, color, marker, shift in ARMS:
        for replicate, arm in runs[runs["scaled"] == scaled].groupby("replicate", sort=True):
            arm = arm.sort_values("c")
            first = replicate == runs["replicate"].min()
            finite = arm[(arm["status"] == "completed") & np.isfinite(arm["loss_final"])]
            left.plot(finite["c"] * shift, finite["loss_final"], marker=marker, color=color,
                      alpha=0.7, mfc="none", label=text if first else "_nolegend_")
            gone = arm[~arm.index.isin(finite.index)]
            left.scatter(gone["c"] * shift, [top] * len(gone), marker="x", color=color, s=40,
                         label=f"{text}: diverged" if first and len(gone) else "_nolegend_")
            right.plot(arm["c"] * shift, arm["explosions"], marker=marker, color=color,
                       alpha=0.7, mfc="none", label=text if first else "_nolegend_")
    for ax in (left, right):
        ax.axvline(1.0, label="c = 1 (lr = 2/S0)", **THEORY_STYLE)
    label(left, "final training loss (one line per init)", "c = lr / (2/S0)", "L(theta_T)",
          logx=True, logy=True)
    label(right, f"loss explosions (> {explosion_ratio:g}x in a step)", "c = lr / (2/S0)",
          "count", logx=True)
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    return caption(figure, "Past the classical limit c = 1 (lr = 2/S0; the two arms drawn "
                   "slightly apart along c): plain GD (circles) should explode or diverge as c "
                   "grows, while normalized update scaling (squares) should keep the loss "
                   "finite with fewer explosions.")


def beyond_trajectories_figure(curves: pd.DataFrame) -> Figure:
    """Part 2 along the runs of the first initialization: left, the sharpness lambda_max(H)
    (log y); right, the last hidden layer's participation ratio; solid: plain GD, dashed: with
    the scaling, one colour per c."""
    figure, axes = new_figure(2)
    left, right = axes[0]
    curves = first_replicate(curves)
    factors = sorted(curves["c"].unique())
    peaks = []
    for scaled, text, *_ in ARMS:
        style = "--" if scaled else "-"
        for i, c in enumerate(factors):
            run = curves[(curves["scaled"] == scaled) & (curves["c"] == c)]
            s = run.dropna(subset=["sharpness"])
            left.plot(s["step"], s["sharpness"], style, color=f"C{i % 10}",
                      label=f"{text}, c = {c:g}")
            peaks.append(float(s["sharpness"].abs().max()) if len(s) else np.nan)
            r = run.dropna(subset=["participation_ratio"])
            right.plot(r["step"], r["participation_ratio"], style, color=f"C{i % 10}",
                       label=f"{text}, c = {c:g}")
    label(left, "sharpness along the run (first init)", "GD step s",
          r"$\lambda_{max}(\nabla^2 L)$", logy=True)
    clip_runaway_lines(left, peaks, log=True)
    label(right, "last hidden layer soft rank", "GD step s",
          "participation ratio (sum s^2)^2 / sum s^4")
    left.legend(fontsize=6)
    right.legend(fontsize=6)
    return caption(figure, "Sharpness and the last hidden layer's soft rank along each run of "
                   "part 2 (solid: plain GD, dashed: with the scaling): the scaling should keep "
                   "the sharpness lower (regularized) and the soft rank higher.")


def taylor_figure(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Taylor coefficients c1, c2, c3 of the loss along each step (symlog y), for each arm at
    the largest c whose run completed, first initialization; c1 + c2 + c3 approximates
    L(theta') - L(theta)."""
    figure, axes = new_figure(2)
    curves, runs = first_replicate(curves), first_replicate(runs)
    for ax, (scaled, text, *_) in zip(axes[0], ARMS, strict=True):
        done = runs[(runs["scaled"] == scaled) & (runs["status"] == "completed")]
        if done.empty:
            label(ax, f"{text}: no completed run", "GD step s", "Taylor coefficient")
            continue
        c = float(done["c"].max())
        run = curves[(curves["scaled"] == scaled) & (curves["c"] == c)].dropna(
            subset=["taylor_c1"])
        for column, color in (("taylor_c1", "C0"), ("taylor_c2", "C1"), ("taylor_c3", "C2")):
            ax.plot(run["step"], run[column], color=color, label=column.removeprefix("taylor_"))
        ax.set_yscale("symlog", linthresh=1e-6)
        label(ax, f"{text}, c = {c:g} (first init)", "GD step s",
              "Taylor coefficient (symlog)")
        ax.legend(fontsize=7)
    return caption(figure, "The Taylor coefficients c1, c2, c3 of the loss change along each "
                   "step, at the largest c that completed: their sum approximates L(theta') - "
                   "L(theta), and where c2 + c3 outweighs -c1 the step raises the loss.")
