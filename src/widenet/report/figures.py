"""Figure helpers shared by the studies: one look, labelled axes, theory drawn beside data.

Figures are plain :class:`matplotlib.figure.Figure` objects made without pyplot, so nothing
depends on a display or on global state; :func:`png_bytes` renders one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

THEORY_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2}


def new_figure(ncols: int = 1, nrows: int = 1, *, panel: tuple[float, float] = (4.6, 3.6)
               ) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows x ncols`` panels; returns it and its axes as a 2-D array."""
    figure = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = np.asarray(figure.subplots(nrows, ncols, squeeze=False))
    return figure, axes


def label(ax: Axes, title: str, xlabel: str, ylabel: str, *, logx: bool = False,
          logy: bool = False) -> None:
    """Title, axis labels, log scales and a light grid for one panel."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def power_law_reference(ax: Axes, x: Sequence[float], y: Sequence[float], exponent: float,
                        text: str) -> None:
    """Draw ``c * x^exponent`` through the geometric mean of the data ``(x, y)``.

    The theory fixes the exponent, not the constant, so the line is anchored on the data.
    """
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x_arr > 0) & (y_arr > 0) & np.isfinite(y_arr)
    if not keep.any():
        return
    log_c = np.mean(np.log(y_arr[keep]) - exponent * np.log(x_arr[keep]))
    grid = np.geomspace(x_arr[keep].min(), x_arr[keep].max(), 50)
    ax.plot(grid, np.exp(log_c) * grid**exponent, label=text, **THEORY_STYLE)


def horizontal_reference(ax: Axes, value: float, text: str) -> None:
    """Draw the theory's constant ``value`` as a dashed horizontal line."""
    ax.axhline(value, label=text, **THEORY_STYLE)


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
