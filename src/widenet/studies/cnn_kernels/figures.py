"""The figures of the ``cnn-kernels`` study (see docs/studies/cnn-kernels.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.figures import caption, label, legend, new_figure, power_law_reference

COLORS = {"flatten": "C0", "gap": "C1"}


def _log_points(frame: pd.DataFrame, slopes: pd.DataFrame, value: str, predicted: float,
                title: str, ylabel: str) -> Figure:
    """``value`` against m on log-log axes, one panel per readout: every network as a dot,
    the geometric mean per m as a line, and a dashed m^predicted reference."""
    readouts = list(dict.fromkeys(frame["readout"]))
    figure, axes = new_figure(len(readouts))
    for ax, readout in zip(axes[0], readouts, strict=True):
        part = frame[frame["readout"] == readout]
        fit = slopes[slopes["readout"] == readout].iloc[0]
        color = COLORS.get(readout, "C2")
        ax.scatter(part["m"], part[value], s=8, alpha=0.3, color=color, linewidths=0)
        means = part.assign(log=np.log(part[value])).groupby("m", as_index=False)["log"].mean()
        ax.plot(means["m"], np.exp(means["log"]), "o-", color=color, markersize=4,
                label=f"slope {fit.slope:.2f} ± {fit.slope_stderr:.2f}")
        power_law_reference(ax, part["m"], part[value], predicted, "theory: ∝ m^-1/2")
        label(ax, f"{title}, {readout} readout", "channels m", ylabel, logx=True, logy=True)
        legend(ax, fontsize=7)
    return figure


def concentration_figure(concentration: pd.DataFrame, slopes: pd.DataFrame,
                         predicted: float) -> Figure:
    """Part (a): the empirical NTK's relative error against the CNTK, against m."""
    figure = _log_points(concentration, slopes, "error", predicted, "empirical NTK vs CNTK",
                         "||K_m - Θ||_F / ||Θ||_F")
    return caption(figure, "The relative error of the empirical NTK of CNNs with m channels "
                   "against the exact CNTK, per readout: theory predicts a line of slope -1/2 "
                   "on these log axes (the dashed reference).")


def distance_figure(trained: pd.DataFrame, slopes: pd.DataFrame, predicted: float) -> Figure:
    """Part (b): the trained CNNs' relative distance to the NTK's prediction, against m."""
    figure = _log_points(trained, slopes, "distance", predicted, "trained CNN vs NTK",
                         "||f_m(X*) - f_NTK(X*)|| / ||f_NTK(X*)||")
    return caption(figure, "How far the trained CNNs' test predictions are from the NTK "
                   "regression's after the same training time: theory predicts the distance "
                   "falls like m^-1/2 (the dashed reference).")


def accuracy_figure(summary: pd.DataFrame, kernels: pd.DataFrame) -> Figure:
    """Part (b): test accuracy of the trained CNNs against m (mean ± 2 s.e.), with the
    kernel-regression accuracies of the limit as horizontal lines, one panel per readout."""
    readouts = list(dict.fromkeys(summary["readout"]))
    figure, axes = new_figure(len(readouts))
    for ax, readout in zip(axes[0], readouts, strict=True):
        part = summary[summary["readout"] == readout]
        ax.errorbar(part["m"], part["accuracy"], yerr=2 * part["accuracy_stderr"], fmt="o-",
                    color=COLORS.get(readout, "C2"), label="trained CNNs (± 2 s.e.)")
        styles = iter(["--", ":", "-."])
        for row in kernels[kernels["readout"] == readout].itertuples():
            ax.axhline(row.accuracy, color="black", linestyle=next(styles), linewidth=1,
                       label=f"{row.kernel} regression: {row.accuracy:.3f}")
        label(ax, f"test accuracy, {readout} readout", "channels m", "accuracy", logx=True)
        legend(ax, fontsize=7)
    return caption(figure, "Test accuracy of the trained CNNs as the width grows, beside the "
                   "kernel-regression accuracies of their infinite-width NNGP and NTK "
                   "(horizontal lines): nets trained for the same number of steps should "
                   "approach the NTK's finite-time line (dash-dot), not its limit at t = inf.")
