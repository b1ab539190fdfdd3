"""Figure helpers: PNG rendering and theory reference lines."""

from __future__ import annotations

import numpy as np
import pytest

from widenet.report.figures import (
    THEORY_STYLE,
    horizontal_reference,
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
