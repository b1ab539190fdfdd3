"""The figures of the ``ntk-spectrum`` study (see docs/studies/ntk-spectrum.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.report.figures import THEORY_STYLE, horizontal_reference, label, new_figure

DEPTH_LABEL = "depth L (hidden layers)"
REFERENCE_CONDITION = {9: 50.0, 99: 38.0, 999: 35.0}
"""docs/theory.md section 4's values of cond(K_inf) for n = 100 at L = 9, 99, 999 ("about")."""


def _per_delta(summary: pd.DataFrame):
    """(Delta, its rows sorted by depth, a colour) for every Delta."""
    for index, (delta, group) in enumerate(summary.groupby("delta", sort=True)):
        yield delta, group.sort_values("depth"), f"C{index}"


def condition_figure(summary: pd.DataFrame, n: int) -> Figure:
    """cond(K_inf) against L per Delta (mean ± stderr over input draws), the limit 1 + n/3 and,
    for n = 100, docs/theory.md's reference values."""
    figure, axes = new_figure(panel=(6.0, 4.2))
    ax = axes[0, 0]
    for delta, group, color in _per_delta(summary):
        ax.errorbar(group["depth"], group["cond"], yerr=group["cond_stderr"], fmt="o-",
                    color=color, markersize=4, label=f"Δ = {delta:g}")
    horizontal_reference(ax, 1.0 + n / 3.0, f"theory: limit 1 + n/3 = {1 + n / 3:.2f}")
    if n == 100:
        ax.plot(list(REFERENCE_CONDITION), list(REFERENCE_CONDITION.values()), "kx", markersize=8,
                label="docs/theory.md: ~50, ~38, ~35 (n = 100)")
    label(ax, f"condition number of K∞ = Θ/n (n = {n})", DEPTH_LABEL,
          "cond(K∞) = λmax / λmin", logx=True)
    ax.legend(fontsize=8)
    return figure


def eigenvalue_figure(summary: pd.DataFrame, n: int) -> Figure:
    """n lambda_min / (L + 1) and n lambda_max / (L + 1) against L per Delta, with their limits
    3/4 and (n + 3)/4, the eigenvalues of (3/4) I + (1/4) 1 1^T."""
    figure, axes = new_figure(2)
    panels = (("lambda_min_scaled", 0.75, "λmin", "3/4"),
              ("lambda_max_scaled", (n + 3) / 4.0, "λmax", "(n + 3)/4"))
    for ax, (column, limit, name, text) in zip(axes[0], panels, strict=True):
        for delta, group, color in _per_delta(summary):
            ax.errorbar(group["depth"], group[column], yerr=group[f"{column}_stderr"],
                        fmt="o-", color=color, markersize=4, label=f"Δ = {delta:g}")
        horizontal_reference(ax, limit, f"theory: {text} = {limit:.4g}")
        label(ax, f"{name}(K∞) per layer", DEPTH_LABEL, f"n {name} / (L + 1)", logx=True)
        ax.legend(fontsize=8)
    return figure


def angle_figure(angles: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """Left: the mean angle theta_l between two inputs' activations against l, with
    3 pi / (2 Delta l). Right: theta_l l 2 Delta / (3 pi) (theta_l = 1 / mean of 1/theta_l),
    which tends to 1; the fitted layers are shaded."""
    figure, axes = new_figure(2)
    left, right = axes[0]
    for index, (delta, group) in enumerate(angles.groupby("delta", sort=True)):
        color = f"C{index}"
        means = group[group["layer"] > 0].groupby("layer", as_index=False)[
            ["angle_mean", "inverse_angle_mean"]].mean()
        layer = means["layer"].to_numpy(dtype=float)
        k = 2.0 * delta / (3.0 * math.pi)
        left.plot(layer, means["angle_mean"], color=color, label=f"Δ = {delta:g}")
        left.plot(layer, 1.0 / (k * layer), color=color, linestyle="--", linewidth=1.0,
                  label="_nolegend_")
        right.plot(layer, k * layer / means["inverse_angle_mean"], color=color,
                   label=f"Δ = {delta:g}")
    left.plot([], [], label="theory: 3π / (2Δ l)", **THEORY_STYLE)
    horizontal_reference(right, 1.0, "theory: limit 1")
    start = int(fits["fit_start"].iloc[0])
    right.axvspan(start, float(angles["layer"].max()), color="grey", alpha=0.12,
                  label="fitted layers")
    label(left, "angle between two inputs' activations", "layer l",
          "θ_l (rad), mean over pairs", logx=True, logy=True)
    label(right, "angle law θ_l ≈ 3π / (2Δ (l + l₀))", "layer l", "θ_l · l · 2Δ / (3π)",
          logx=True)
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower right")
    return figure


def inverse_angle_figure(summary: pd.DataFrame) -> Figure:
    """Relative error of Theta_ij ~ C / theta_L(ij) against L per Delta: with the least-squares
    C (solid) and with C = 3 pi / (8 Delta) (dotted), and the line 1 / (2L)."""
    figure, axes = new_figure(panel=(6.0, 4.2))
    ax = axes[0, 0]
    for delta, group, color in _per_delta(summary):
        ax.plot(group["depth"], group["inverse_angle_error"], "o-", color=color,
                markersize=4, label=f"Δ = {delta:g}, fitted C")
        ax.plot(group["depth"], group["inverse_angle_error_theory"], "s:", color=color,
                markersize=3, label=f"Δ = {delta:g}, C = 3π/(8Δ)")
    depths = np.geomspace(summary["depth"].min(), summary["depth"].max(), 50)
    ax.plot(depths, 0.5 / depths, label="1 / (2L) (the -1/8 offset)", **THEORY_STYLE)
    label(ax, "off-diagonal Θ_ij ≈ C / θ_L(ij)", DEPTH_LABEL,
          "‖Θ - C/θ‖ / ‖Θ‖ over pairs i < j", logx=True, logy=True)
    ax.legend(fontsize=7, ncol=2)
    return figure
