"""The figures of the ``implicit-bias`` study (see docs/studies/implicit-bias.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.figures import (
    caption,
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
    return caption(figure, "The normalized margin along training, one colour per seed: theory "
                   "predicts it rises (the smoothed margin monotonically) and ends above"
                   " the lazy NTK margin of the initialization (dashed).")


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
    return caption(figure, "The weight norm against log t: for homogeneous nets trained on the "
                   "logistic loss theory predicts growth like (log t)^(1/L) (the dashed "
                   "line), i.e. a straight line of that slope on these axes.")


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
    return caption(figure, "The final margin beside the lazy and tangent-kernel margins, per "
                   "activation and depth (log scale): implicit bias toward max-margin "
                   "predicts the trained margin exceeds the lazy one.")


def convergence_figure(checkpoints: pd.DataFrame) -> Figure:
    """Against the step (log-log), one line per run and colour per (activation, depth): the
    direction change between checkpoints, 1 - cos(theta, -grad L) and the KKT stationarity
    residual; all three go to 0 by the theory."""
    panels = (("direction_change", r"$\|u_{s_k} - u_{s_{k-1}}\|$", "direction change"),
              ("gradient_alignment", r"$1 - \cos(\theta, -\nabla L)$", "alignment gap"),
              ("kkt_stationarity", "stationarity residual", "KKT residual"))
    figure, axes = new_figure(len(panels))
    groups = list(checkpoints.groupby(["activation", "depth"], sort=False))
    for ax, (column, ylabel, title) in zip(axes[0], panels, strict=True):
        for i, ((activation, depth), group) in enumerate(groups):
            for j, (_, run) in enumerate(group.groupby("seed", sort=True)):
                values = run[column].to_numpy(dtype=float)
                if column == "gradient_alignment":
                    values = 1 - values
                ax.plot(run["step"], values, marker="o", markersize=3, color=f"C{i}",
                        linewidth=1, label=f"{activation}, L={depth}" if j == 0 else None)
        label(ax, title, "GD step", ylabel, logx=True, logy=True)
    legend(axes[0, 0], fontsize=7)
    return caption(figure, "At checkpoints evenly spaced in log t: the change of the "
                   "normalized weights between checkpoints, the gap of their alignment with "
                   "the negative gradient, and the KKT stationarity residual of the "
                   "max-margin problem; the theory says all three tend to 0.")
