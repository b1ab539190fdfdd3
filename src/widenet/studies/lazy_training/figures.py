"""The figures of the lazy-training study, drawn from its summary table (one row per
activation, width and alpha, with means and standard errors over the replicates)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from widenet.report.figures import label, new_figure, power_law_reference
from widenet.studies.lazy_training.measure import is_kinked

_MARKERS = "osD^v<>"
_PANELS = {"weight_movement": "weight movement ||w_T - w_0|| / ||w_0||",
           "kernel_movement": "NTK movement ||K_T - K_0||_F / ||K_0||_F",
           "linearization_error": "linearization error ||f_T - f_lin|| / ||f_T - f_0||",
           "pattern_flips": "activation-pattern flips (count)"}


def _curves(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame, dict]]:
    """(legend label, rows sorted by alpha, plot style) for each (activation, width)."""
    activations = list(dict.fromkeys(summary["activation"]))
    curves = []
    for index, ((activation, width), group) in enumerate(
            summary.groupby(["activation", "width"], sort=False)):
        style = {"color": f"C{index % 10}",
                 "marker": _MARKERS[activations.index(activation) % len(_MARKERS)]}
        curves.append((f"{activation}, m={width}", group.sort_values("alpha"), style))
    return curves


def _errorbars(ax: Axes, x: pd.Series, group: pd.DataFrame, column: str, text: str,
               style: dict) -> None:
    ax.errorbar(x, group[column], yerr=group[f"{column}_se"], label=text, markersize=4,
                capsize=2, linewidth=1, **style)


def movement_figure(summary: pd.DataFrame, alpha_min: float) -> Figure:
    """Weight movement, NTK movement, linearization error and pattern flips against alpha
    (log-log), mean +- standard error over seeds, the alpha^-1 law dashed, the alpha^-1/2 law
    of pattern flips dotted where an activation is kinked, the fit range alpha >= alpha_min
    shaded."""
    figure, axes = new_figure(2, 2)
    kinked = summary[summary["activation"].map(is_kinked)]
    for ax, (column, title) in zip(axes.flat, _PANELS.items(), strict=True):
        for text, group, style in _curves(summary):
            _errorbars(ax, group["alpha"], group, column, text, style)
        fitted = summary[summary["alpha"] >= alpha_min]
        power_law_reference(ax, fitted["alpha"], fitted[column], -1.0, "alpha^-1")
        if column in ("kernel_movement", "linearization_error") and not kinked.empty:
            _dotted_power_law(ax, kinked[kinked["alpha"] >= alpha_min], column, -0.5,
                              "alpha^-1/2 (pattern flips)")
        ax.axvspan(alpha_min, summary["alpha"].max(), color="0.9", zorder=0)
        label(ax, title, "output scale alpha", column.replace("_", " "), logx=True, logy=True)
    for ax in axes.flat:
        ax.legend(fontsize=7)
    return figure


def _dotted_power_law(ax: Axes, rows: pd.DataFrame, column: str, exponent: float,
                      text: str) -> None:
    """A dotted c * alpha^exponent through the geometric mean of ``rows``' positive values."""
    keep = rows[rows[column] > 0]
    if keep.empty:
        return
    log_c = float(np.mean(np.log(keep[column]) - exponent * np.log(keep["alpha"])))
    grid = np.geomspace(keep["alpha"].min(), keep["alpha"].max(), 50)
    ax.plot(grid, np.exp(log_c) * grid**exponent, color="black", linestyle=":", label=text)


def loss_figure(summary: pd.DataFrame) -> Figure:
    """Final train and test loss (1/(2n)) ||f_T - y||^2 of the lazy model against alpha, with
    the linearized model's (the kernel predictor after the same GD steps) as a dashed line of
    the same color, and the relative test-loss gap (L_test - L_test,lin) / L_test,lin (paired
    per seed) against alpha."""
    figure, axes = new_figure(3)
    for ax, split in zip(axes[0, :2], ("train", "test"), strict=True):
        for text, group, style in _curves(summary):
            _errorbars(ax, group["alpha"], group, f"{split}_loss", text, style)
            ax.axhline(group[f"{split}_loss_linear"].mean(), color=style["color"],
                       linestyle="--", linewidth=1)
        ax.plot([], [], color="black", linestyle="--", label="linearized model")
        label(ax, f"{split} loss after T steps", "output scale alpha",
              f"{split} loss (1/2n)||f_T - y||^2", logx=True, logy=True)
        ax.legend(fontsize=7)
    ax = axes[0, 2]
    for text, group, style in _curves(summary):
        _errorbars(ax, group["alpha"], group, "test_gap", text, style)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=1.2, label="linearized model")
    label(ax, "test loss relative to the linearized model", "output scale alpha",
          "(L_test - L_test,lin) / L_test,lin", logx=True)
    ax.legend(fontsize=7)
    return figure


def criterion_figure(smooth: pd.DataFrame) -> Figure:
    """Linearization error against the relative-scale criterion kappa = kappa_1 / alpha
    (smooth activations only; log-log) with a line proportional to kappa."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    for text, group, style in _curves(smooth):
        ax.plot(group["kappa"], group["linearization_error"], label=text, linewidth=1,
                markersize=4, **style)
    power_law_reference(ax, smooth["kappa"], smooth["linearization_error"], 1.0, "∝ kappa")
    label(ax, "linearization error vs relative scale kappa",
          "kappa = ||y|| ||D^2 f(w_0)|| / (alpha ||D f(w_0)||^2)",
          "||f_T - f_lin|| / ||f_T - f_0||", logx=True, logy=True)
    ax.legend(fontsize=7)
    return figure
