"""The figures of the ``implicit-bias`` study (see docs/studies/implicit-bias.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.report.figures import (
    horizontal_reference,
    label,
    legend,
    new_figure,
    power_law_reference,
)
from widenet.studies.implicit_bias.measure import GROUP_KEYS


def _panels(stats: pd.DataFrame) -> list[tuple[str, int, int]]:
    return list(stats[GROUP_KEYS].drop_duplicates().itertuples(index=False, name=None))


def margin_figure(trajectory: pd.DataFrame, stats: pd.DataFrame) -> Figure:
    """gamma_t (solid) and the smoothed margin (dotted) against the step, one colour per seed,
    beside the lazy margin gamma_NTK(theta_0) (dashed), one panel per (activation, depth)."""
    panels = _panels(stats)
    figure, axes = new_figure(len(panels))
    for ax, (activation, depth, degree) in zip(axes[0], panels, strict=True):
        where = stats[(stats["activation"] == activation) & (stats["depth"] == depth)]
        for index, run in enumerate(where.itertuples()):
            data = trajectory[(trajectory["activation"] == activation)
                              & (trajectory["depth"] == depth) & (trajectory["seed"] == run.seed)
                              & (trajectory["step"] > 0)]
            colour = f"C{index % 10}"
            ax.plot(data["step"], data["normalized_margin"], color=colour,
                    label=f"gamma_t, seed {run.seed}")
            ax.plot(data["step"], data["smoothed_margin"], color=colour, linestyle=":",
                    label="smoothed" if index == 0 else None)
        horizontal_reference(ax, float(where["lazy_margin"].mean()), "NTK margin at init")
        finals = where["final_margin"].to_numpy(dtype=float)
        if np.isfinite(finals).any() and np.nanmax(finals) > 0:  # zoom on the separated phase
            top = float(np.nanmax(finals))
            ax.set_ylim(-0.25 * top, 1.2 * top)
        label(ax, f"{activation}, L={depth} (L_h={degree})", "GD step t",
              "normalized margin", logx=True)
        ax.legend(fontsize=7)
    return figure


def norm_figure(trajectory: pd.DataFrame, stats: pd.DataFrame) -> Figure:
    """||theta_t|| against log t on log-log axes, one panel per (activation, depth), with the
    theory's (log t)^(1/L_h) anchored on the late data."""
    panels = _panels(stats)
    figure, axes = new_figure(len(panels))
    for ax, (activation, depth, degree) in zip(axes[0], panels, strict=True):
        data = trajectory[(trajectory["activation"] == activation)
                          & (trajectory["depth"] == depth) & (trajectory["time"] > 1)]
        for index, (seed, run) in enumerate(data.groupby("seed")):
            ax.plot(np.log(run["time"]), run["parameter_norm"], color=f"C{index % 10}",
                    label=f"seed {seed}")
        late = data[data["time"] >= data["time"].max() ** 0.5]
        power_law_reference(ax, np.log(late["time"]), late["parameter_norm"], 1.0 / degree,
                            f"(log t)^(1/{degree})")
        label(ax, f"{activation}, L={depth} (L_h={degree})", "log t  (t = lr * step)",
              "||theta_t||", logx=True, logy=True)
        legend(ax, fontsize=7)
    return figure


def final_margin_figure(summary: pd.DataFrame) -> Figure:
    """Bars (mean ± stderr over seeds, log scale: margins of different L_h differ by orders of
    magnitude) of the final gamma_T, the lazy margin gamma_NTK(theta_0) and the tangent margin
    at the end gamma_tangent(theta_T) for each (activation, depth)."""
    figure, axes = new_figure(panel=(max(4.6, 1.6 * len(summary)), 3.6))
    ax = axes[0, 0]
    positions = np.arange(len(summary))
    bars = [("final_margin", "trained gamma_T"), ("lazy_margin", "NTK at init (lazy)"),
            ("final_tangent_margin", "tangent SVM at theta_T")]
    for offset, (column, text) in enumerate(bars):
        ax.bar(positions + (offset - 1) * 0.27, summary[column], width=0.27,
               yerr=summary[f"{column}_se"], label=text, color=f"C{offset}")
    ax.set_xticks(positions, [f"{row.activation}\nL={row.depth}" for row in
                              summary.itertuples()])
    label(ax, "final normalized margins", "activation, hidden layers",
          "min_i y_i f(x_i) / ||theta||^L_h", logy=True)
    ax.legend(fontsize=7)
    return figure
