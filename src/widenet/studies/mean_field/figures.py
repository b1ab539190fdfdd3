"""The figures of the mean-field study, drawn from its summary tables (means and standard
errors over the replicates) and from the particles of one width."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from widenet.figures import THEORY_STYLE, caption, horizontal_reference, label, new_figure
from widenet.studies.mean_field.measure import SCALINGS

COLORS = {"mean-field": "C0", "ntk": "C3"}
TITLES = {"mean-field": "mean field: f = (1/m) sum c_i relu(.), lr x m",
          "ntk": "NTK: f = (1/sqrt m) sum c_i relu(.), lr x 1"}
_MOVEMENT_LAWS = {"mean-field": (0.0, "m^0 (mean field)", "--"),
                  "ntk": (-0.5, "m^-1/2 (NTK)", ":")}


def _errorbars(ax: Axes, rows: pd.DataFrame, column: str, text: str, **style: object) -> None:
    ax.errorbar(rows["width"], rows[column], yerr=rows[f"{column}_se"], label=text,
                markersize=4, capsize=2, linewidth=1, marker="o", **style)


def _law(ax: Axes, rows: pd.DataFrame, column: str, exponent: float, text: str,
         linestyle: str) -> None:
    """c * m^exponent through the geometric mean of the rows' positive values."""
    keep = rows[(rows[column] > 0) & np.isfinite(rows[column])]
    if keep.empty:
        return
    log_c = float(np.mean(np.log(keep[column]) - exponent * np.log(keep["width"])))
    grid = np.geomspace(keep["width"].min(), keep["width"].max(), 50)
    ax.plot(grid, np.exp(log_c) * grid**exponent, label=text,
            **{**THEORY_STYLE, "linestyle": linestyle})


def movement_figure(summary: pd.DataFrame) -> Figure:
    """Mean distance travelled by a particle, (1/m) sum_i ||w_i(T) - w_i(0)||, against the
    width m (log-log) for both scalings, mean +- standard error over seeds, with m^0 (dashed)
    and m^-1/2 (dotted) through each scaling's points."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    for scaling in SCALINGS:
        rows = summary[summary["scaling"] == scaling].sort_values("width")
        _errorbars(ax, rows, "movement", scaling, color=COLORS[scaling])
        exponent, text, linestyle = _MOVEMENT_LAWS[scaling]
        _law(ax, rows, "movement", exponent, text, linestyle)
    label(ax, "distance travelled per neuron", "width m",
          "(1/m) sum_i ||w_i(T) - w_i(0)||", logx=True, logy=True)
    ax.legend(fontsize=7)
    return caption(figure, "The mean distance a neuron travels against width for both scalings: "
                   "mean-field scaling predicts it stays of order one (m^0, dashed), the"
                   " NTK scaling that it falls like m^-1/2 (dotted).")


def particle_figure(particles: pd.DataFrame, teacher: Sequence[float]) -> Figure:
    """Particles before (grey) and after (colour) training, one panel per scaling: the
    direction of a_i in the plane of the first two input coordinates (degrees) against the
    output weight c_i, a thin segment joining each particle's two positions (left out where
    the direction wraps around +-180 degrees); the teacher's neuron directions as dotted
    vertical lines."""
    figure, axes = new_figure(len(SCALINGS))
    for ax, scaling in zip(axes[0], SCALINGS, strict=True):
        rows = particles[particles["scaling"] == scaling]
        paired = rows.pivot(index="neuron", columns="stage", values=["angle", "c"]).dropna()
        if "trained" in paired["angle"]:
            start = paired.xs("initial", axis=1, level="stage").to_numpy()
            end = paired.xs("trained", axis=1, level="stage").to_numpy()
            keep = np.abs(end[:, 0] - start[:, 0]) < 180.0
            ax.add_collection(LineCollection(np.stack([start[keep], end[keep]], axis=1),
                                             colors=COLORS[scaling], linewidths=0.5,
                                             alpha=0.4))
        for stage, style in (("initial", {"color": "0.6", "s": 6}),
                             ("trained", {"color": COLORS[scaling], "s": 8})):
            points = rows[rows["stage"] == stage]
            ax.scatter(points["angle"], points["c"], label=f"{stage} (t = "
                       f"{'0' if stage == 'initial' else 'T'})", linewidths=0, **style)
        for index, angle in enumerate(teacher):
            ax.axvline(angle, color="black", linestyle=":", linewidth=1,
                       label="teacher neuron directions" if index == 0 else None)
        width = int(rows["width"].iloc[0]) if not rows.empty else 0
        label(ax, f"{TITLES[scaling]}, m={width}", "direction of a_i: atan2(a_i2, a_i1) [deg]",
              "output weight c_i")
        ax.set_xlim(-180, 180)
        ax.legend(fontsize=7)
    return caption(figure, "Each neuron as a particle before (grey) and after (colour) training:"
                   " under mean-field scaling particles should move far and gather at "
                   "the teacher's directions (dotted lines), under the NTK scaling they "
                   "should barely move.")


def transport_figure(transport: pd.DataFrame, widest: int) -> Figure:
    """Sliced W_2 between the particles of width m and those of the widest width M against m
    (log-log), mean +- standard error over seeds: trained particles per scaling, and initial
    particles (the same draws for both scalings); dashed, the i.i.d. law
    C sqrt(1/m + 1/M) (:func:`iid_transport_law`) through the mean-field trained points."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    curves = [(scaling, "trained", f"{scaling}, trained", COLORS[scaling], "-")
              for scaling in SCALINGS]
    curves.append(("mean-field", "initial", "initial (both scalings)", "0.5", ":"))
    for scaling, stage, text, color, linestyle in curves:
        rows = transport[(transport["scaling"] == scaling)
                         & (transport["stage"] == stage)].sort_values("width")
        ax.errorbar(rows["width"], rows["distance"], yerr=rows["distance_se"], label=text,
                    color=color, marker="o", markersize=4, capsize=2, linewidth=1,
                    linestyle=linestyle)
    trained = transport[(transport["scaling"] == "mean-field")
                        & (transport["stage"] == "trained")]
    keep = trained[np.isfinite(trained["distance"]) & (trained["distance"] > 0)]
    if not keep.empty:
        law = iid_transport_law(keep["width"].to_numpy(float), widest)
        constant = float(np.exp(np.mean(np.log(keep["distance"]) - np.log(law))))
        grid = np.geomspace(keep["width"].min(), keep["width"].max(), 50)
        ax.plot(grid, constant * iid_transport_law(grid, widest),
                label=f"C sqrt(1/m + 1/{widest}) (i.i.d. particles)", **THEORY_STYLE)
    label(ax, f"distance to the particles of width M = {widest}", "width m",
          f"sliced W_2(mu_m, mu_{widest})", logx=True, logy=True)
    ax.legend(fontsize=7)
    return caption(figure, "The sliced Wasserstein distance between the trained particles of "
                   "width m and of the widest net: if the particle measure converges, it"
                   " should fall like the i.i.d. law sqrt(1/m + 1/M) (dashed), as the "
                   "initial particles do.")


def iid_transport_law(widths: np.ndarray, widest: int) -> np.ndarray:
    """sqrt(1/m + 1/M): the shape in m of the sliced W_2 distance between the empirical
    measures of m and M independent draws from one law: each projected 1-D W_2^2 has
    expectation ~ c (1/m + 1/M), up to the law's constant c (and, for Gaussian tails, a
    log log m factor, Bobkov & Ledoux 2019)."""
    return np.sqrt(1.0 / np.asarray(widths, dtype=float) + 1.0 / widest)


def loss_figure(summary: pd.DataFrame) -> Figure:
    """Test loss (1/(2 n_test)) ||f(X_test) - y_test||^2 after training against the width m
    (log-log) for both scalings, mean +- standard error over seeds; the initial test loss of
    each scaling as open markers, and the loss of the zero predictor, (1/2) mean y_test^2,
    dashed."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    for scaling in SCALINGS:
        rows = summary[summary["scaling"] == scaling].sort_values("width")
        _errorbars(ax, rows, "test_loss", f"{scaling}, trained", color=COLORS[scaling])
        _errorbars(ax, rows, "initial_test_loss", f"{scaling}, at init",
                   color=COLORS[scaling], fillstyle="none", linestyle="--")
    horizontal_reference(ax, float(summary["zero_test_loss"].mean()), "zero predictor")
    label(ax, "test loss against width", "width m", "test loss (1/2n) ||f - y||^2",
          logx=True, logy=True)
    ax.legend(fontsize=7)
    return caption(figure, "Test loss after training against width for both scalings (open "
                   "markers: before training; dashed: the zero predictor): both should "
                   "improve on the initial loss and on predicting zero.")


def _per_seed(ax: Axes, frame: pd.DataFrame, x: str, y: str, color: str, text: str) -> None:
    """One thin line per seed and the mean over the seeds (thick, with its label)."""
    for _, part in frame.groupby("seed"):
        ax.plot(part[x], part[y], color=color, alpha=0.35, linewidth=0.8)
    mean = frame.groupby(x, as_index=False)[y].mean()
    ax.plot(mean[x], mean[y], color=color, marker="o", linewidth=1.6, label=text)


def neurons_figure(neurons: pd.DataFrame) -> Figure:
    """Final training and test loss over the zero predictor's training loss against the number
    of neurons m (log-log), per seed and averaged."""
    figure, axes = new_figure()
    ax = axes[0, 0]
    scaled = neurons.assign(train=neurons["train_loss"] / neurons["zero_train_loss"],
                            test=neurons["test_loss"] / neurons["zero_train_loss"])
    _per_seed(ax, scaled, "width", "train", "C0", "train loss / $L_0$")
    _per_seed(ax, scaled, "width", "test", "C1", "test loss / $L_0$")
    label(ax, "global convergence in the number of neurons", "neurons m",
          "final loss / zero predictor's", logx=True, logy=True)
    ax.legend(fontsize=7)
    return caption(figure, "Mean-field nets of m neurons trained on the same data: the final "
                   "loss falls with m towards 0 (Chizat & Bach: global convergence of the "
                   "many-particle limit); thin lines are seeds.")


def scales_figure(scales: pd.DataFrame) -> Figure:
    """Against the initialization scale tau (log-log): the final test and training loss over
    the zero predictor's test loss, and the relative movement ||theta_T - theta_0|| /
    ||theta_0||, per seed and averaged."""
    figure, axes = new_figure(2)
    scaled = scales.assign(train=scales["train_loss"] / scales["zero_test_loss"],
                           test=scales["test_loss"] / scales["zero_test_loss"])
    _per_seed(axes[0, 0], scaled, "scale", "test", "C1", "test loss / $L_0$")
    _per_seed(axes[0, 0], scaled, "scale", "train", "C0", "train loss / $L_0$")
    label(axes[0, 0], "lazy versus rich: loss", r"initialization scale $\tau$", "final loss",
          logx=True, logy=True)
    axes[0, 0].legend(fontsize=7)
    _per_seed(axes[0, 1], scales, "scale", "relative_movement", "C2",
              r"$\|\theta_T - \theta_0\| / \|\theta_0\|$")
    label(axes[0, 1], "lazy versus rich: movement", r"initialization scale $\tau$",
          "relative movement", logx=True, logy=True)
    axes[0, 1].legend(fontsize=7)
    return caption(figure, "A symmetrized mean-field net started at scale tau: large tau "
                   "trains lazily (the weights barely move) and generalizes worse on the "
                   "few-neuron teacher than small tau, where the neurons move and align "
                   "(Chizat, Oyallon & Bach's lazy-training figures); thin lines are seeds.")
