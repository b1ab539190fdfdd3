"""The figures of the ``gd-convergence`` study (see docs/studies/gd-convergence.md).

Measurements are coloured markers or solid lines; the theory is black and dashed
(:data:`widenet.report.figures.THEORY_STYLE`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from widenet.report.figures import THEORY_STYLE, label, new_figure, power_law_reference

MEASURED = {"color": "C0", "s": 14, "alpha": 0.6, "linewidths": 0}
DISTANCE = r"$\|\theta_T - \theta_0\|$"


def _seed_colors(runs: pd.DataFrame) -> dict[int, str]:
    return {seed: f"C{i % 10}" for i, seed in enumerate(sorted(runs["seed"].unique()))}


def _geometric_means(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per width m: the geometric mean of ``column`` over the seeds."""
    logs = runs.assign(log=np.log(runs[column].abs())).groupby("m", as_index=False)["log"].mean()
    return logs.assign(mean=np.exp(logs["log"]))


def loss_curves_figure(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """loss_s / loss_0 against the step s (log y), one panel per width: every seed's measured
    curve (solid), its kernel prediction from Theta and its own f_0 (dashed) and Du et al.'s
    guaranteed (1 - lr lambda_min / (2n))^s (dotted)."""
    widths = sorted(curves["m"].unique())
    figure, axes = new_figure(len(widths))
    colors = _seed_colors(runs)
    for ax, m in zip(axes[0], widths, strict=True):
        for seed, curve in curves[curves["m"] == m].groupby("seed", sort=True):
            start = float(curve["loss"].iloc[0])
            first = seed == min(colors)
            ax.plot(curve["step"], curve["loss"] / start, color=colors[seed], linewidth=1.2,
                    label="network (a colour per seed)" if first else "_nolegend_")
            ax.plot(curve["step"], curve["loss_pred"] / start, **THEORY_STYLE,
                    label="kernel prediction (own f_0)" if first else "_nolegend_")
        run = runs[runs["m"] == m].iloc[0]
        steps = np.arange(int(run["steps"]) + 1)
        ax.plot(steps, run["du_factor"] ** steps, color="gray", linestyle=":",
                label="Du et al. bound")
        label(ax, f"m = {m}", "GD step s", "loss_s / loss_0", logy=True)
        ax.legend(fontsize=7)
    return figure


def rate_figure(runs: pd.DataFrame, tolerance: float) -> Figure:
    """Left: every run's fitted late-window decay rate against the K_inf prediction's rate on
    the same window (y = x dashed; the asymptotic -2 ln rho dotted). Right: |rate / rate_pred
    - 1| against m on log-log axes with the m^-1/2 law through the narrower widths."""
    figure, axes = new_figure(2)
    left, right = axes[0]
    _measured_vs_predicted(left, runs, "rate", "rate_pred", r"$-d \ln(\mathrm{loss}) / ds$")
    left.axvline(float(runs["rate_asymptotic"].iloc[0]), color="gray", linestyle=":",
                 label=r"asymptotic $-2 \ln \rho$")
    label(left, "late-window decay rate", r"$K_\infty$ prediction (same window)", "measured (fit)")
    left.legend(fontsize=7)
    _error_panel(right, runs, "rate_error", tolerance, "rate error", "|rate / rate_pred - 1|")
    return figure


def _measured_vs_predicted(ax: Axes, runs: pd.DataFrame, measured: str, predicted: str,
                           quantity: str) -> None:
    """Every run as a dot (predicted, measured), coloured by width, and the line y = x."""
    for i, (m, group) in enumerate(runs.groupby("m", sort=True)):
        ax.scatter(group[predicted], group[measured], color=f"C{i % 10}", s=16,
                   label=f"m = {m}")
    low = min(runs[predicted].min(), runs[measured].min())
    high = max(runs[predicted].max(), runs[measured].max())
    ax.plot([low, high], [low, high], label=f"theory: measured = predicted ({quantity})",
            **THEORY_STYLE)


def _error_panel(ax: Axes, runs: pd.DataFrame, column: str, tolerance: float, title: str,
                 ylabel: str) -> None:
    """|column| of every run and |mean over seeds| per width against m (log-log), and the
    m^-1/2 law ending at the check's tolerance at the widest width: tolerance (m / m_max)^-1/2."""
    ax.scatter(runs["m"], runs[column].abs(), label="one network", **MEASURED)
    means = runs.groupby("m", as_index=False)[column].mean()
    ax.scatter(means["m"], means[column].abs(), marker="D", color="C1", edgecolors="black",
               s=24, label="|mean over seeds| (checked at the widest m)")
    grid = np.geomspace(runs["m"].min(), runs["m"].max(), 50)
    ax.plot(grid, tolerance * (grid / runs["m"].max()) ** -0.5,
            label=r"tolerance: $\propto m^{-1/2}$ from the narrower widths", **THEORY_STYLE)
    label(ax, title, "width m", ylabel, logx=True, logy=True)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)


def deviation_figure(runs: pd.DataFrame, fits: pd.DataFrame, predicted: float) -> Figure:
    """max_s ||f_s - f_pred,s|| / ||r_0|| against m on log-log axes: every run, the geometric
    mean over seeds, and the theory's m^predicted line anchored on the data."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    fit = fits[fits["quantity"] == "deviation_max"].iloc[0]
    ax.scatter(runs["m"], runs["deviation_max"], **MEASURED)
    means = _geometric_means(runs, "deviation_max")
    ax.plot(means["m"], means["mean"], "o-", color="C0", markersize=4,
            label=f"measured: slope {fit.slope:.2f} ± {fit.slope_stderr:.2f}")
    power_law_reference(ax, runs["m"], runs["deviation_max"], predicted,
                        r"theory: $\propto m^{-1/2}$")
    label(ax, "distance from the kernel prediction", "width m",
          r"$\max_s \|f_s - f_{\mathrm{pred},s}\| / \|f_0 - y\|$", logx=True, logy=True)
    ax.legend(fontsize=7)
    return figure


def distance_figure(runs: pd.DataFrame, fits: pd.DataFrame, tolerance: float) -> Figure:
    """Left: every run's ||theta_T - theta_0|| against its prediction sqrt(r_0^T Theta^-1 r_0)
    (y = x dashed). Middle: the relative error against m with the m^-1/2 law through the
    narrower widths. Right: the relative movement ||theta_T - theta_0|| / ||theta_0|| against m
    (log-log) with the predicted one (dashed), each with its fitted slope."""
    figure, axes = new_figure(3)
    left, middle, right = axes[0]
    _measured_vs_predicted(left, runs, "distance", "distance_pred", DISTANCE)
    label(left, "distance travelled", r"predicted $\sqrt{r_0^T \Theta^{-1} r_0}$",
          f"measured {DISTANCE}")
    left.legend(fontsize=7)
    _error_panel(middle, runs, "distance_error", tolerance, "distance error",
                 "|distance / predicted - 1|")
    slopes = fits.set_index("quantity")
    measured = slopes.loc["relative_movement"]
    predicted = slopes.loc["relative_movement_pred"]
    right.scatter(runs["m"], runs["relative_movement"],
                  label=f"measured: slope {measured.slope:.3f} ± {measured.slope_stderr:.3f}",
                  **MEASURED)
    means = _geometric_means(runs, "relative_movement_pred")
    right.plot(means["m"], means["mean"], label=f"predicted: slope {predicted.slope:.3f}",
               **THEORY_STYLE)
    label(right, "relative movement", "width m", DISTANCE + r" / $\|\theta_0\|$", logx=True,
          logy=True)
    right.legend(fontsize=7)
    return figure
