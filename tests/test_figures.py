"""Figure helpers: PNG rendering and theory reference lines."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from widenet.figures import (
    THEORY_STYLE,
    horizontal_reference,
    label,
    legend,
    log_scale,
    new_figure,
    png_bytes,
    power_law_reference,
)


def test_png_bytes_is_a_png() -> None:
    figure, axes = new_figure(2, 1, panel=(1.5, 1.0))
    assert axes.shape == (1, 2)
    axes[0, 0].plot([0, 1], [0, 1])
    data = png_bytes(figure, dpi=30)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 100


@pytest.mark.parametrize("exponent", [-0.5, 1.0, 2.0])
def test_power_law_reference_has_the_requested_slope(exponent: float) -> None:
    _, axes = new_figure()
    ax = axes[0, 0]
    x = np.array([8.0, 16.0, 32.0, 64.0, 0.0])
    y = np.array([3.0, 2.5, 1.0, 0.7, 5.0])
    power_law_reference(ax, x, y, exponent, "theory")
    (line,) = ax.get_lines()
    grid, values = (np.asarray(data, dtype=float) for data in line.get_data())
    slopes = np.diff(np.log(values)) / np.diff(np.log(grid))
    np.testing.assert_allclose(slopes, exponent, rtol=1e-10)
    assert grid.min() == pytest.approx(8.0)
    assert grid.max() == pytest.approx(64.0)
    keep = x > 0
    anchor = np.mean(np.log(y[keep]) - exponent * np.log(x[keep]))
    np.testing.assert_allclose(np.log(values) - exponent * np.log(grid), anchor, rtol=1e-10)
    assert line.get_label() == "theory"
    assert line.get_linestyle() == THEORY_STYLE["linestyle"]


def test_power_law_reference_draws_nothing_without_positive_data() -> None:
    _, axes = new_figure()
    power_law_reference(axes[0, 0], [0.0, -1.0], [1.0, 2.0], -0.5, "theory")
    assert axes[0, 0].get_lines() == []


def test_horizontal_reference_is_at_the_value() -> None:
    _, axes = new_figure()
    horizontal_reference(axes[0, 0], 0.25, "limit")
    (line,) = axes[0, 0].get_lines()
    assert list(line.get_ydata()) == [0.25, 0.25]


@pytest.mark.parametrize(("values", "xscale"), [([math.nan, math.nan], "linear"),
                                                ([0.0, -1.0], "log")])
def test_log_axes_with_nothing_positive_render_linear(values: list[float], xscale: str) -> None:
    figure, axes = new_figure(panel=(1.5, 1.0))
    ax = axes[0, 0]
    label(ax, "all runs diverged", "x", "y", logx=True, logy=True)
    ax.errorbar([1.0, 2.0], values, yerr=[math.nan, math.nan], marker="o")
    assert png_bytes(figure, dpi=30).startswith(b"\x89PNG")  # NaN points leave x empty too
    assert (ax.get_xscale(), ax.get_yscale()) == (xscale, "linear")
    assert "no positive finite values" in ax.texts[0].get_text()


def test_log_scale_keeps_data_without_positive_values_linear() -> None:
    _, axes = new_figure()
    ax = axes[0, 0]
    ax.plot([1.0, 2.0], [0.0, -1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when log-scaling such data
        log_scale(ax, "y")
        log_scale(ax, "x", base=2)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "linear")
    assert ax.xaxis.get_transform().base == 2


def test_positive_log_axes_are_left_alone() -> None:
    figure, axes = new_figure(panel=(1.5, 1.0))
    ax = axes[0, 0]
    ax.plot([1.0, 2.0], [math.nan, 3.0])
    label(ax, "one finite point", "x", "y", logx=True, logy=True)
    png_bytes(figure, dpi=30)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert len(ax.texts) == 0


def test_legend_only_with_labelled_artists() -> None:
    _, axes = new_figure()
    ax = axes[0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        legend(ax)
    assert ax.get_legend() is None
    ax.plot([1.0], [1.0], label="data")
    legend(ax, fontsize=7)
    assert ax.get_legend() is not None
