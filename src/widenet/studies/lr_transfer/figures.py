"""Figures of the lr-transfer study: loss against lr per width, the optimal lr against width,
and the coordinate check (docs/studies/lr-transfer.md, "Figures")."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from widenet.figures import (
    THEORY_STYLE,
    caption,
    horizontal_reference,
    label,
    log_scale,
    min_log_span,
    new_figure,
    power_law_reference,
)
from widenet.studies.lr_transfer.config import PREDICTED_SLOPE

TITLES = {"standard": "SP", "ntk": "NTK", "mup": "muP"}

COORDINATE_SPAN = 8.0
"""The least factor a coordinate-check panel's y axis spans: a flat line (1.015 to 1.045 over
m = 32..256) then looks flat, and a growth by 2x or more still fills the panel."""


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
    return caption(figure, "Final train loss against the learning rate, one line per width "
                   "(vertical lines: each width's optimum): under muP the minima should line "
                   "up across widths, under SP they should move to smaller learning rates as "
                   "the width grows.")


def optimum_figure(optima: pd.DataFrame, shifts: pd.DataFrame, drifts: pd.DataFrame,
                   base_width: int) -> Figure:
    """One column per optimizer. Top: the refined optimal lr against width (log-log, base 2),
    mean and standard error over seeds per parametrization (optima at the grid's edge plotted
    at the edge and counted in the legend); dashed: the predicted scaling (SP ~ 1/m through
    SP's points, muP flat at its mean). Bottom, what the drift checks judge: each seed's shift
    of log2 lr* per doubling of m (``shifts``, dots), their mean and standard error (``drifts``'
    ``shift``, ``shift_stderr``, black), the band the check accepts (``shift_low`` to
    ``shift_high``, shaded) and the predicted shift (dashed)."""
    opts = list(dict.fromkeys(optima["optimizer"]))
    figure, axes = new_figure(len(opts), 2)
    for col, opt in enumerate(opts):
        ax = axes[0, col]
        for index, (name, group) in enumerate(
                optima[optima["optimizer"] == opt].groupby("parametrization", sort=False)):
            stats = group.groupby("m")["log2_lr_opt"].agg(["mean", "std", "count"])
            error = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
            edge = int(group["at_edge"].sum())
            ax.errorbar(stats.index, np.exp2(stats["mean"]),
                        yerr=[np.exp2(stats["mean"]) - np.exp2(stats["mean"] - error),
                              np.exp2(stats["mean"] + error) - np.exp2(stats["mean"])],
                        fmt="o-", color=f"C{index}", capsize=3,
                        label=TITLES[name] + (f" ({edge} optima at the grid's edge)" if edge
                                              else ""))
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
        _shift_panel(axes[1, col], shifts[shifts["optimizer"] == opt],
                     drifts[drifts["optimizer"] == opt], opt)
    return caption(figure, "Top: the optimal learning rate against width (± s.e. over seeds); "
                   "theory predicts a flat line for muP (the dashed level) and a fall like 1/m "
                   "for SP (the dashed slope). Bottom: what the lr checks judge: each seed's "
                   "shift of log2 lr* per doubling of the width (dots: the slope over that "
                   "seed's optima inside the grid), their mean ± s.e. (black) and the band the "
                   "check accepts (shaded: at most one grid step over the width range for muP "
                   "and NTK, a fall of more than one step for SP; dashed: the shift the width "
                   "scaling of one update predicts); a transfer check fails only "
                   "more than 2 s.e. outside its band, SP's passes only 2 s.e. inside; no "
                   "error bar: the s.e. is unknown (optima at the grid's edge), the check "
                   "inconclusive.")


def _shift_panel(ax: Axes, shifts: pd.DataFrame, drifts: pd.DataFrame, opt: str) -> None:
    """One optimizer's per-seed shifts, their mean ± s.e. and the check's band, one column per
    parametrization (in ``drifts``' order, coloured as in the panel above)."""
    names = list(drifts["parametrization"])
    drawn = [*shifts["shift"], *drifts["shift"] + drifts["shift_stderr"].fillna(0.0),
             *drifts["shift"] - drifts["shift_stderr"].fillna(0.0), *drifts["shift_low"],
             *drifts["shift_high"], *(PREDICTED_SLOPE[(n, opt)] for n in names), 0.0]
    finite = np.asarray(drawn, dtype=float)
    finite = finite[np.isfinite(finite)]
    pad = 0.15 * max(float(finite.max() - finite.min()), 0.5)
    low, high = float(finite.min()) - pad, float(finite.max()) + pad
    for x, row in enumerate(drifts.itertuples()):
        color = f"C{x}"
        ax.fill_between([x - 0.4, x + 0.4], max(row.shift_low, low), min(row.shift_high, high),
                        color=color, alpha=0.15, linewidth=0,
                        label="accepted band" if x == 0 else None)
        seeds = shifts[shifts["parametrization"] == row.parametrization]["shift"]
        ax.scatter(x - 0.12 + np.linspace(-0.08, 0.08, len(seeds)), seeds, color=color, s=16,
                   zorder=3, label="one seed" if x == 0 else None)
        known = bool(np.isfinite(row.shift_stderr))
        ax.errorbar(x + 0.15, row.shift, yerr=row.shift_stderr if known else None, fmt="s",
                    color="black", capsize=4, markersize=5, zorder=4,
                    label="mean ± s.e." if x == 0 else None)
        if not known:
            ax.text(x, high, "s.e. unknown:\ninconclusive", ha="center", va="top", fontsize=7,
                    color="0.3")
        ax.hlines(PREDICTED_SLOPE[(row.parametrization, opt)], x - 0.4, x + 0.4,
                  label="theory" if x == 0 else None, **THEORY_STYLE)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xticks(range(len(names)), [TITLES[name] for name in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(low, high)
    label(ax, f"what the lr checks judge ({opt})", "",
          "shift per doubling, d log2 lr* / d log2 m")
    ax.legend(fontsize=6)


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
    plain = FuncFormatter(lambda value, _: f"{value:g}")
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
                  f"mean |z_{layer}|", logx=True)
            log_scale(ax, "x", base=2)
            log_scale(ax, "y", base=2)
            ax.yaxis.set_major_formatter(plain)
            min_log_span(ax, "y", COORDINATE_SPAN)
            ax.legend(fontsize=6)
    return caption(figure, f"Coordinate check ({optimizer}): mean |z_l| of each layer against "
                   "width after each training step, on log axes spanning at least a factor "
                   f"{COORDINATE_SPAN:g}; muP predicts flat lines (slope 0) in every layer, SP "
                   "lines that grow with width in the logits (and, under Adam, the hidden "
                   "layers).")
