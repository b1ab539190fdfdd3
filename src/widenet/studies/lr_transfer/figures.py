"""Figures of the lr-transfer study: loss against lr per width, the optimal lr against width,
and the coordinate check (docs/studies/lr-transfer.md, "Figures")."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from widenet.report.figures import (
    horizontal_reference,
    label,
    log_scale,
    new_figure,
    power_law_reference,
)
from widenet.studies.lr_transfer.config import PREDICTED_SLOPE

TITLES = {"standard": "SP", "ntk": "NTK", "mup": "muP"}


def _colors(values: list) -> dict:
    cmap = colormaps["viridis"]
    return {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(values)}


def loss_curves_figure(sweep: pd.DataFrame, optima: pd.DataFrame, loss: str) -> Figure:
    """One panel per (optimizer row, parametrization column): the seed-mean final train loss
    against lr (log-log), one line per width; a star at the mean refined optimum's grid point,
    crosses along the top where a run diverged (loss +inf)."""
    names = list(dict.fromkeys(sweep["parametrization"]))
    opts = list(dict.fromkeys(sweep["optimizer"]))
    widths = sorted(sweep["m"].unique())
    colors = _colors(widths)
    figure, axes = new_figure(len(names), len(opts))
    for row, opt in enumerate(opts):
        for col, name in enumerate(names):
            ax = axes[row, col]
            part = sweep[(sweep["parametrization"] == name) & (sweep["optimizer"] == opt)]
            curves = part.groupby(["m", "lr"])["train_loss"].mean().reset_index()
            finite = curves[np.isfinite(curves["train_loss"])]
            top = float(finite["train_loss"].max()) * 3 if len(finite) else 10.0
            for m in widths:
                curve = curves[curves["m"] == m]
                ok = curve[np.isfinite(curve["train_loss"])]
                ax.plot(ok["lr"], ok["train_loss"], "o-", markersize=3, color=colors[m],
                        label=f"m={m}")
                bad = curve[~np.isfinite(curve["train_loss"])]
                ax.scatter(bad["lr"], np.full(len(bad), top), marker="x", color=colors[m])
                best = optima[(optima["parametrization"] == name) & (optima["optimizer"] == opt)
                              & (optima["m"] == m)]["log2_lr_opt"].mean()
                if np.isfinite(best):
                    ax.axvline(2.0**best, color=colors[m], linewidth=0.8, alpha=0.6)
            label(ax, f"{TITLES[name]}, {opt}: train loss after training (x = diverged)",
                  "learning rate", f"final train loss ({loss})", logx=True, logy=True)
            log_scale(ax, "x", base=2)
            ax.legend(fontsize=6)
    return figure


def optimum_figure(optima: pd.DataFrame, drifts: pd.DataFrame, base_width: int) -> Figure:
    """One panel per optimizer: the refined optimal lr against width (log-log, base 2), mean and
    standard error over seeds per parametrization (optima at the grid's edge included as
    plotted; the legend's drift leaves them out and counts them); dashed: the predicted scaling
    (SP ~ 1/m through SP's points, muP flat at its mean)."""
    opts = list(dict.fromkeys(optima["optimizer"]))
    figure, axes = new_figure(len(opts))
    for col, opt in enumerate(opts):
        ax = axes[0, col]
        for index, (name, group) in enumerate(
                optima[optima["optimizer"] == opt].groupby("parametrization", sort=False)):
            stats = group.groupby("m")["log2_lr_opt"].agg(["mean", "std", "count"])
            error = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
            drift = drifts[(drifts["parametrization"] == name)
                           & (drifts["optimizer"] == opt)].iloc[0]
            ax.errorbar(stats.index, np.exp2(stats["mean"]),
                        yerr=[np.exp2(stats["mean"]) - np.exp2(stats["mean"] - error),
                              np.exp2(stats["mean"] + error) - np.exp2(stats["mean"])],
                        fmt="o-", color=f"C{index}", capsize=3,
                        label=f"{TITLES[name]}: drift {drift['drift']:+.2f} ± "
                              f"{drift['drift_stderr']:.2f} steps, "
                              f"{drift['edge_optima']} optima at the edge")
            if name in ("standard", "mup"):
                slope = PREDICTED_SLOPE[(name, opt)]
                text = f"theory {TITLES[name]}: " + (r"$\propto m^{-1}$" if slope else "flat")
                if slope:
                    power_law_reference(ax, stats.index, np.exp2(stats["mean"]), slope, text)
                else:
                    horizontal_reference(ax, float(np.exp2(stats["mean"].mean())), text)
        ax.axvline(base_width, color="grey", linewidth=0.8, linestyle=":")
        label(ax, f"optimal learning rate ({opt}; dotted: muP base width)", "width m",
              "optimal lr (parabola through the grid minimum)")
        log_scale(ax, "x", base=2)
        log_scale(ax, "y", base=2)
        ax.legend(fontsize=6)
    return figure


def coordinate_figure(coords: pd.DataFrame, slopes: pd.DataFrame, optimizer: str) -> Figure:
    """Rows: parametrizations; columns: dense layers l = 1..L+1 (the last is the logits).
    Each panel: seed-mean of mean |z_l| against width (log-log), one line per step t of the
    coordinate check; the title gives the fitted slope at the last step (muP: flat, SP: grows)."""
    part = coords[coords["optimizer"] == optimizer]
    names = list(dict.fromkeys(part["parametrization"]))
    layers = sorted(part["layer"].unique())
    steps = sorted(part["step"].unique())
    colors = _colors(steps)
    figure, axes = new_figure(len(layers), len(names), panel=(3.6, 3.0))
    for row, name in enumerate(names):
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            cell = part[(part["parametrization"] == name) & (part["layer"] == layer)]
            means = cell.groupby(["step", "m"])["mean_abs"].mean().reset_index()
            for step in steps:
                line = means[means["step"] == step]
                ax.plot(line["m"], line["mean_abs"], "o-", markersize=3, color=colors[step],
                        label=f"t={step}" if step in (steps[0], steps[-1]) else None)
            fit = slopes[(slopes["parametrization"] == name) & (slopes["optimizer"] == optimizer)
                         & (slopes["layer"] == layer)]
            slope = (f"slope {fit['slope'].iloc[0]:+.2f} ± {fit['slope_stderr'].iloc[0]:.2f}"
                     if len(fit) else "no fit")
            what = "logits" if layer == layers[-1] else f"layer {layer}"
            label(ax, f"{TITLES[name]} {optimizer}, {what}: {slope}", "width m",
                  f"mean |z_{layer}|", logx=True, logy=True)
            log_scale(ax, "x", base=2)
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=6)
    return figure
