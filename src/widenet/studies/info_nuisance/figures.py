"""The figures of the ``info-nuisance`` study (see docs/studies/info-nuisance.md).

Measurements are coloured; the theory (fixed-kernel GD prediction) is black and dashed
(:data:`widenet.figures.THEORY_STYLE`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.figures import THEORY_STYLE, caption, label, new_figure

PAPER = {0.0: (0.381, 0.987), 0.5: (0.328, 0.896)}
"""Oymak et al. (2019), ResNet20 on CIFAR-10: ||P_I y|| / ||y|| at init and at the end, for clean
and 50% corrupted labels (docs/theory.md section 5); context only."""


FLOOR = 1e-6
"""Lower y limit of the residual figure: the fixed-kernel prediction's I-part falls to float64
round-off (1e-16), far below anything measured; the axis is cut at this value."""


def _condition(corrupt: float) -> str:
    return "clean labels" if corrupt == 0 else f"{corrupt:.0%} corrupted labels"


def _panels(curves: pd.DataFrame) -> list[tuple[float, pd.DataFrame]]:
    return list(curves.groupby("corrupt", sort=True))


def residual_figure(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """||P_I r_t|| / ||r_0|| and ||P_N r_t|| / ||r_0|| against the step t (log y), one panel per
    label condition: every seed measured (solid) and the fixed-kernel prediction (dashed), the
    y axis cut at FLOOR."""
    panels = _panels(curves)
    figure, axes = new_figure(len(panels))
    for ax, (corrupt, group) in zip(axes[0], panels, strict=True):
        for i, (_, run) in enumerate(group.groupby("seed", sort=True)):
            first = i == 0
            ax.plot(run["step"], run["residual_information"], color="C0", linewidth=1.2,
                    label=r"$\|P_I r_t\| / \|r_0\|$" if first else None)
            ax.plot(run["step"], run["residual_nuisance"], color="C3", linewidth=1.2,
                    label=r"$\|P_N r_t\| / \|r_0\|$" if first else None)
            for column in ("residual_information_pred", "residual_nuisance_pred"):
                ax.plot(run["step"], run[column], **THEORY_STYLE,
                        label="fixed $K_0$ prediction" if first and "info" in column else None)
        step = int(runs["check_step"].iloc[0])
        ax.axvline(step, color="grey", linestyle=":", linewidth=1, label=f"$t_c$ = {step}")
        label(ax, _condition(corrupt), "GD step t", "residual part / $\\|r_0\\|$", logy=True)
        ax.set_ylim(bottom=FLOOR)
        ax.legend(fontsize=7)
    return caption(figure, "The residual's parts in the information space (top eigenvectors of "
                   "the NTK) and in the nuisance space along training: the information "
                   "part should fall fast and the nuisance part slowly, as the fixed-"
                   "kernel prediction (dashed) says.")


def label_information_figure(runs: pd.DataFrame) -> Figure:
    """||P_I y|| / ||y|| with the NTK at init and at the end per (scale alpha, label condition):
    bars = mean over seeds with standard-error whiskers, dots = the seeds, crosses = the paper's
    ResNet20/CIFAR-10 values (next to the alpha = 1 bars)."""
    conditions = sorted({(float(s), float(c)) for s, c in zip(runs["scale"], runs["corrupt"],
                                                              strict=True)},
                        key=lambda sc: (-sc[0], sc[1]))
    figure, axes = new_figure(panel=(2.2 + 1.7 * len(conditions), 3.8))
    ax = axes[0, 0]
    for j, (column, when) in enumerate((("label_information_init", "init"),
                                        ("label_information_end", "end"))):
        for i, (scale, corrupt) in enumerate(conditions):
            chosen = (runs["scale"] == scale) & (runs["corrupt"] == corrupt)
            values = runs.loc[chosen, column].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            x = i + (j - 0.5) * 0.38
            stderr = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else 0.0
            ax.bar(x, values.mean(), width=0.36, color=f"C{j}", alpha=0.7, yerr=stderr,
                   capsize=3, label=f"widenet MLP, NTK at {when}" if i == 0 else None)
            ax.scatter(np.full(values.size, x), values, color="black", s=8, zorder=3)
            paper = PAPER.get(corrupt) if scale == 1 else None
            if paper is not None:
                ax.scatter(x, paper[j], marker="x", color="C3", s=40, zorder=4,
                           label="ResNet20/CIFAR-10 (Oymak et al.)" if i == j == 0 else None)
    ax.set_xticks(range(len(conditions)),
                  [_condition(c) + ("" if s == 1 else f"\n$\\alpha$ = {s:g} (not lazy)")
                   for s, c in conditions])
    ax.set_ylim(0, 1.05)
    label(ax, "labels in the NTK's information space", "", r"$\|P_I y\| / \|y\|$")
    ax.legend(fontsize=7, loc="lower left")
    return caption(figure, "The fraction of the labels in the NTK's information space at "
                   "initialization and at the end (bars: mean ± s.e.; crosses: the "
                   "paper's values), for the lazy-scale net (alpha = 1) and the one that is "
                   "not lazy: the claim is that training raises it as the kernel adapts to "
                   "the labels.")


def nuisance_error_figure(runs: pd.DataFrame) -> Figure:
    """Final test error against the labels' nuisance share ||P_N y|| / ||y|| (NTK at init),
    one point per (corruption level, seed), the levels of a seed joined by a line."""
    figure, axes = new_figure(panel=(5.0, 3.8))
    ax = axes[0, 0]
    for i, (seed, group) in enumerate(runs.groupby("seed", sort=True)):
        group = group.sort_values("nuisance_labels")
        ax.plot(group["nuisance_labels"], group["test_error_final"], marker="o", color=f"C{i}",
                linewidth=1, label=f"seed {seed}")
        for row in group.itertuples():
            ax.annotate(f"{row.corrupt:.0%}", (row.nuisance_labels, row.test_error_final),
                        fontsize=6, xytext=(3, -8), textcoords="offset points")
    label(ax, "test error against the labels' nuisance part",
          r"$\|P_N y\| / \|y\|$ (NTK at init)", "final test error")
    ax.legend(fontsize=7)
    return caption(figure, "Final test error against the share of the labels in the NTK's "
                   "nuisance space, one point per corruption level (annotated) and seed: "
                   "the theory says the larger the nuisance part, the more of the fit is "
                   "memorization and the higher the test error.")


def test_error_figure(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Against the step t, one panel per label condition, seeds averaged: the test error, the
    nuisance part ||P_N r_t|| / ||r_0|| and the fractions of corrupted and clean training
    points fitted (argmax = training label)."""
    panels = _panels(curves)
    figure, axes = new_figure(len(panels))
    series = (("test_error", "test error", "C2"),
              ("residual_nuisance", r"$\|P_N r_t\| / \|r_0\|$", "C3"),
              ("fit_corrupted", "corrupted points fitted", "C1"),
              ("fit_clean", "clean points fitted", "C0"))
    for ax, (corrupt, group) in zip(axes[0], panels, strict=True):
        mean = group.groupby("step", as_index=False).mean(numeric_only=True)
        for column, text, color in series:
            if mean[column].notna().any():
                ax.plot(mean["step"], mean[column], color=color, linewidth=1.4, label=text)
        step = int(runs["check_step"].iloc[0])
        ax.axvline(step, color="grey", linestyle=":", linewidth=1, label=f"$t_c$ = {step}")
        ax.set_ylim(0, 1.02)
        label(ax, _condition(corrupt), "GD step t", "fraction")
        ax.legend(fontsize=7)
    return caption(figure, "Test error, the nuisance part of the residual and the fractions of "
                   "corrupted and clean points fitted, along training: the theory "
                   "predicts clean points are fitted first and corrupted ones (held in "
                   "the nuisance space) late, as the test error rises.")
