"""Statistics and figures of the ``implicit-bias`` study (docs/studies/implicit-bias.md)."""

from __future__ import annotations

import math

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
from widenet.studies.fits import mean_stderr, power_law_fit

DECREASE_TOLERANCE = 1e-9
"""A logged smoothed margin counts as a decrease when it is below the previous one by more
than this times the previous one's magnitude (float64 round-off of log(1/L) / rho^L_h)."""

RUN_KEYS = ["activation", "depth", "degree", "seed"]
GROUP_KEYS = ["activation", "depth", "degree"]
_AVERAGED = ["norm_slope", "norm_exponent", "margin_gain", "rich_over_lazy", "final_margin",
             "lazy_margin", "final_tangent_margin", "margin_at_separation"]


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least squares y ~ a + b x: returns (b, its OLS standard error
    sqrt(s^2 / sum (x - mean x)^2), s^2 the residual variance on len(x) - 2 degrees of freedom;
    nan with fewer than three points)."""
    if len(x) < 3:
        return math.nan, math.nan
    centred = x - x.mean()
    slope = float(centred @ (y - y.mean()) / (centred @ centred))
    residual = y - y.mean() - slope * centred
    return slope, math.sqrt(float(residual @ residual) / (len(x) - 2) / float(centred @ centred))


def run_statistics(trajectory: pd.DataFrame, runs: pd.DataFrame, late_step: float
                   ) -> pd.DataFrame:
    """One row per run: t_0 (first logged step with smoothed margin > 0, i.e. L_sum < l(0)),
    gamma at t_0 and at the end, the fraction of logged steps after t_0 where the smoothed
    margin decreased, the late (step >= late_step and >= t_0) slope b of ||theta||^L_h = a + b
    log t with its OLS stderr, the log-log exponent of ||theta|| against log t (theory: 1/L_h),
    and gamma_T / gamma_NTK(theta_0)."""
    rows = []
    for keys, run in trajectory.groupby(RUN_KEYS, sort=False):
        run = run.sort_values("step")
        smoothed = run["smoothed_margin"].to_numpy()
        separated = np.flatnonzero(smoothed > 0)
        row = dict(zip(RUN_KEYS, keys, strict=True))
        row["separation_step"] = math.nan
        row["decrease_fraction"] = math.nan
        row["margin_at_separation"] = math.nan
        row["final_margin"] = float(run["normalized_margin"].iloc[-1])
        row["norm_slope"] = row["norm_slope_se"] = math.nan
        row["norm_exponent"] = row["norm_exponent_se"] = math.nan
        if separated.size:
            start = separated[0]
            after = smoothed[start:]
            falls = after[1:] < after[:-1] - DECREASE_TOLERANCE * np.abs(after[:-1])
            row["separation_step"] = int(run["step"].iloc[start])
            row["margin_at_separation"] = float(run["normalized_margin"].iloc[start])
            row["decrease_fraction"] = float(falls.mean()) if falls.size else 0.0
            late = run[(run["step"] >= max(late_step, row["separation_step"]))
                       & (run["time"] > 1)]
            if len(late) >= 3:
                log_t = np.log(late["time"].to_numpy())
                norm = late["parameter_norm"].to_numpy()
                row["norm_slope"], row["norm_slope_se"] = linear_fit(log_t, norm**keys[2])
                fit = power_law_fit(log_t, norm)
                row["norm_exponent"], row["norm_exponent_se"] = fit.slope, fit.slope_stderr
        rows.append(row)
    stats = runs.merge(pd.DataFrame(rows), on=RUN_KEYS)
    stats["margin_gain"] = stats["final_margin"] - stats["margin_at_separation"]
    stats["rich_over_lazy"] = stats["final_margin"] / stats["lazy_margin"]
    return stats


def summarize(stats: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, depth): run counts, the largest decrease fraction, and mean ± standard
    error over the completed runs of every quantity in ``_AVERAGED``."""
    rows = []
    for keys, group in stats.groupby(GROUP_KEYS, sort=False):
        done = group[group["status"] == "completed"]
        row = dict(zip(GROUP_KEYS, keys, strict=True))
        row["runs"], row["completed"] = len(group), len(done)
        fractions = done["decrease_fraction"]
        row["decrease_fraction_max"] = float(fractions.max()) if fractions.notna().all() \
            and len(done) else math.nan
        for name in _AVERAGED:
            values = done[name].to_numpy(dtype=float)
            mean, stderr = mean_stderr(values) if len(values) else (math.nan, math.nan)
            row[name], row[f"{name}_se"] = mean, stderr
        rows.append(row)
    return pd.DataFrame(rows)


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
