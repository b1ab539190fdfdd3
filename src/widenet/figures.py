"""Figure helpers shared by the studies: one look, labelled axes, theory drawn beside data.

Figures are plain :class:`matplotlib.figure.Figure` objects made without pyplot, so nothing
depends on a display or on global state; :func:`png_bytes` renders one. :func:`caption` gives a
figure its one-sentence caption (what to look at, what the theory predicts); the PNG carries it
as its ``Description`` text (:func:`png_caption` reads it back), so a report rewritten from the
figure files alone still has it. A log axis with no
positive finite value to show (every run of a panel diverged) is drawn linear instead, with a
note, so that a figure of diverged runs renders rather than failing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter

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
        log_scale(ax, "x")
    if logy:
        log_scale(ax, "y")
    ax.grid(True, which="major", alpha=0.3)


def legend(ax: Axes, **kwargs: object) -> None:
    """``ax.legend(**kwargs)`` if the panel has labelled artists; nothing (and no matplotlib
    warning) when it has none, e.g. because every run it shows diverged."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def log_scale(ax: Axes, which: str, base: float = 10) -> None:
    """Set the ``which`` ("x" or "y") axis of ``ax`` to a log scale of ``base``, unless it
    already shows data and none of it is positive and finite (it then stays linear).

    Data drawn later with no positive finite value is caught by :func:`png_bytes`."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    if ax.has_data() and not _has_positive_data(axis):
        return
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    if base == 10:
        axis.set_minor_formatter(SparseLogLabels())


class SparseLogLabels(Formatter):
    """Minor-tick labels of a base-10 log axis that never crowd: none on an axis spanning two
    decades or more (the decades are labelled), else only 2 and 5 times a power of ten, as
    plain numbers (``200``, ``0.005``): matplotlib's default labels every minor tick of a short
    axis, and ``3x10^2 4x10^2 ...`` overlap."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        low, high = sorted(abs(v) for v in self.axis.get_view_interval())
        if not (x > 0 and low > 0) or np.log10(high / low) >= 2:
            return ""
        mantissa = x / 10.0 ** np.floor(np.log10(x) + 1e-9)
        return f"{x:g}" if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def min_log_span(ax: Axes, which: str, factor: float) -> None:
    """Widen the ``which`` ("x" or "y") limits of a log axis of ``ax`` to span at least
    ``factor`` (about the geometric centre of the data), so that a nearly constant quantity
    looks nearly constant instead of being stretched over the whole panel."""
    get, set_ = (ax.get_xlim, ax.set_xlim) if which == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = get()
    if not (low > 0 and high > 0) or high / low >= factor:
        return
    centre, half = np.sqrt(low * high), np.sqrt(factor)
    set_(centre / half, centre * half)


def clip_runaway_lines(ax: Axes, line_maxima: Sequence[float], *, ratio: float = 100.0,
                       log: bool = False) -> int:
    """Cap the y axis of ``ax`` just above the lines that stay bounded, when some lines (of
    runs that diverged) peak more than ``ratio`` times the median peak, so they do not squash
    the others; says so in the panel. Returns how many lines run off the top."""
    peaks = np.asarray(line_maxima, dtype=float)
    peaks = peaks[~np.isnan(peaks)]
    if peaks.size == 0:
        return 0
    median = float(np.median(peaks))
    bounded = peaks[np.isfinite(peaks) & (peaks <= ratio * abs(median))]
    runaway = int(peaks.size - bounded.size)
    if runaway and bounded.size and bounded.max() > 0:
        top = float(bounded.max())
        ax.set_ylim(top=top * (3.0 if log else 1.15))
        ax.text(0.98, 0.98, f"{runaway} diverging line(s) run off the top", ha="right",
                va="top", transform=ax.transAxes, fontsize=7, color="0.35")
    return runaway


def _has_positive_data(axis: Axis) -> bool:
    """Whether the data drawn along ``axis`` holds a positive finite value."""
    minpos = axis.get_minpos()
    return bool(np.isfinite(minpos) and minpos > 0)


def _linearize_empty_log_axes(figure: Figure) -> None:
    """Turn every log axis of ``figure`` with no positive finite data to draw into a linear one
    and say so in its panel (matplotlib cannot render such an axis on a log scale)."""
    for ax in figure.axes:
        empty = [setter for axis, setter in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale))
                 if axis.get_scale() == "log" and not _has_positive_data(axis)]
        for setter in empty:
            setter("linear")
        if empty:
            ax.text(0.5, 0.5, "no positive finite values\n(diverged?)", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8, color="0.4")


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


def caption(figure: Figure, text: str) -> Figure:
    """Give ``figure`` its caption ``text`` (kept as the figure's label); returns the figure."""
    figure.set_label(text)
    return figure


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG (log axes with nothing positive to show are drawn linear),
    its caption, if it has one, stored as the PNG's ``Description`` text."""
    _linearize_empty_log_axes(figure)
    buffer = io.BytesIO()
    text = figure.get_label()
    figure.savefig(buffer, format="png", dpi=dpi,
                   metadata={"Description": text} if text else None)
    return buffer.getvalue()


def png_caption(png: bytes) -> str:
    """The caption stored in a PNG by :func:`png_bytes` (empty if it has none or is not a
    readable PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            return str(image.info.get("Description", ""))
    except (UnidentifiedImageError, OSError):
        return ""
