"""The figures of the ``ntk-concentration`` study (see docs/studies/ntk-concentration.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from widenet.figures import caption, label, new_figure, power_law_reference

COLORS = {"constant": "C0", "quadratic": "C1"}


ERROR_LABEL = "||K(θ) - K∞||₂"


def _geometric_means(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of ``x``: the geometric mean of ``y`` over the seeds."""
    logs = frame.assign(log_y=np.log(frame[y])).groupby(x, as_index=False)["log_y"].mean()
    return logs.assign(mean=np.exp(logs["log_y"]))


def _panels(errors: pd.DataFrame, rows: str, columns: str) -> tuple[Figure, list[tuple]]:
    """A figure with one panel per (row value, column value) and the list of
    (axes, row value, column value, that panel's rows of ``errors``)."""
    row_values = list(dict.fromkeys(errors[rows]))
    column_values = list(dict.fromkeys(errors[columns]))
    figure, axes = new_figure(len(column_values), len(row_values))
    panels = []
    for i, row_value in enumerate(row_values):
        for j, column_value in enumerate(column_values):
            part = errors[(errors[rows] == row_value) & (errors[columns] == column_value)]
            panels.append((axes[i, j], row_value, column_value, part))
    return figure, panels


def _pattern_points(ax: Axes, part: pd.DataFrame, x: str, text: str, color: str) -> None:
    """Every network as a faint dot and the geometric mean over seeds as a line."""
    ax.scatter(part[x], part["error"], s=6, alpha=0.25, color=color, linewidths=0)
    means = _geometric_means(part, x, "error")
    ax.plot(means[x], means["mean"], "o-", color=color, markersize=4, label=text)


def error_vs_width_figure(errors: pd.DataFrame, slopes: pd.DataFrame,
                          predicted: float) -> Figure:
    """Error against m on log-log axes, one panel per (activation, depth), both patterns, each
    with a dashed m^predicted line anchored on its data."""
    figure, panels = _panels(errors, "activation", "depth")
    for ax, act, depth, part in panels:
        for pattern, group in part.groupby("pattern", sort=False):
            fit = slopes[(slopes["activation"] == act) & (slopes["depth"] == depth)
                         & (slopes["pattern"] == pattern)].iloc[0]
            _pattern_points(ax, group, "m",
                            f"{pattern}: slope {fit.slope:.2f} ± {fit.slope_stderr:.2f}",
                            COLORS[pattern])
            power_law_reference(ax, group["m"], group["error"], predicted,
                                "theory: ∝ m^-1/2" if pattern == "constant" else "_nolegend_")
        label(ax, f"{act}, L = {depth}", "width m (constant: m_l = m; quadratic: m_l = l²m)",
              ERROR_LABEL, logx=True, logy=True)
        ax.legend(fontsize=7)
    return caption(figure, "The relative error of the empirical NTK against its infinite-width "
                   "limit, against width, one panel per activation and depth: theory "
                   "predicts a fall along the dashed power law.")


def abs_relu_figure(ratios: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Paired log(error_abs / error_relu) against m, one panel per (pattern, depth), with the
    pooled mean ± 2 standard errors and the theory's boundary 0 (prediction: below)."""
    figure, panels = _panels(ratios, "pattern", "depth")
    for ax, pattern, depth, part in panels:
        color = COLORS.get(pattern, "C2")
        ax.scatter(part["m"], part["log_ratio"], s=8, alpha=0.35, color=color, linewidths=0,
                   label="one pair of networks")
        per_m = part.groupby("m", as_index=False)["log_ratio"].mean()
        ax.plot(per_m["m"], per_m["log_ratio"], "o-", color=color, markersize=4,
                label="mean over seeds")
        row = summary[(summary["pattern"] == pattern) & (summary["depth"] == depth)].iloc[0]
        low, high = row.mean_log_ratio - 2 * row.stderr, row.mean_log_ratio + 2 * row.stderr
        ax.axhspan(low, high, color=color, alpha=0.15,
                   label=f"pooled mean ± 2 s.e. ({row.mean_log_ratio:.2f})")
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1.2,
                   label="theory: below 0 (|s| better)")
        label(ax, f"{pattern} widths, L = {depth}", "width m",
              "log(error_abs / error_relu)", logx=True)
        ax.legend(fontsize=7)
    return caption(figure, "The paired log ratio of the errors of abs and ReLU nets against "
                   "width: the theory's constant predicts abs concentrates faster, so "
                   "the points and their pooled mean (± 2 s.e.) should lie below 0.")


def error_vs_params_figure(errors: pd.DataFrame, equal: pd.DataFrame) -> Figure:
    """Error against the parameter count P on log-log axes, one panel per (activation, depth),
    both patterns with their power-law fits, and the comparison point P0 (dotted)."""
    figure, panels = _panels(errors, "activation", "depth")
    for ax, act, depth, part in panels:
        for pattern, group in part.groupby("pattern", sort=False):
            _pattern_points(ax, group, "params", pattern, COLORS[pattern])
        match = equal[(equal["activation"] == act) & (equal["depth"] == depth)]
        if not match.empty:
            row = match.iloc[0]
            ax.axvline(row.params, color="gray", linestyle=":", linewidth=1,
                       label=f"P0 = {row.params:.3g}: quadratic/constant = "
                             f"{np.exp(row.log_ratio):.2f}")
            for pattern in COLORS:
                ax.plot([row.params], [row[f"error_{pattern}"]], "s", color=COLORS[pattern],
                        markersize=6, markeredgecolor="black")
        label(ax, f"{act}, L = {depth}", "parameter count P", ERROR_LABEL, logx=True,
              logy=True)
        ax.legend(fontsize=7)
    return caption(figure, "The error against the parameter count for the two width patterns, "
                   "with power-law fits: at equal parameter count (dotted P0) the figure"
                   " shows which pattern concentrates better.")


def structure_figure(probes: pd.DataFrame, fits: pd.DataFrame,
                     family: pd.DataFrame | None) -> Figure:
    """The structure sweeps at the probe width, one panel each: the error against L (both
    patterns), against k and against n (quadratic pattern), every network a faint dot and the
    geometric mean a line per activation (legend: fitted slope ± stderr), and the family's
    mean error against the bound's constant (Delta^-2 + sqrt(k) L) kappa^2 (``family``: the
    table of :func:`~widenet.studies.ntk_concentration.structure.family_table`, or None)."""
    sweeps = [s for s in ("depth", "outputs", "points") if (probes["sweep"] == s).any()]
    sweeps += ["family"] if family is not None else []
    figure, axes = new_figure(len(sweeps))
    titles = {"depth": "depth L", "outputs": "outputs k", "points": "inputs n"}
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        part = probes[probes["sweep"] == sweep]
        if family is not None and sweep == "family":
            table = family
            ax.errorbar(table["bound_constant"], np.exp(table["mean_log_error"]),
                        yerr=2 * table["stderr"] * np.exp(table["mean_log_error"]), fmt="o",
                        capsize=3)
            for row in table.itertuples():
                ax.annotate(row.activation, (row.bound_constant, np.exp(row.mean_log_error)),
                            fontsize=6)
            label(ax, "activation family (same networks)", "bound constant "
                  "(Δ⁻² + √k L) κ²", ERROR_LABEL + " (geometric mean ± 2 s.e.)", logx=True,
                  logy=True)
            continue
        for index, ((act, pattern), group) in enumerate(part.groupby(["activation", "pattern"],
                                                                     sort=False)):
            fit = fits[(fits["sweep"] == sweep) & (fits["activation"] == act)
                       & (fits["pattern"] == pattern)].iloc[0]
            _pattern_points(ax, group.rename(columns={sweep: "_x"}), "_x",
                            f"{act}/{pattern}: slope {fit.slope:.2f} ± {fit.slope_stderr:.2f}",
                            f"C{index}")
        label(ax, f"error against {titles[sweep]}", titles[sweep], ERROR_LABEL, logx=True,
              logy=True)
        ax.legend(fontsize=6)
    return caption(figure, "The structure of the bound at one width: the error against depth "
                   "(at most linear for m_l = l²m), against the number of outputs (∝ √k at "
                   "large k), against the number of inputs (flat), and across the activation "
                   "family against the bound's constant (rising).")
