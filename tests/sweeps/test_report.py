"""The sweep report's figures: each check across the points over its predicted value and band."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection

from widenet.sweeps.report import sweep_figures


def _results() -> pd.DataFrame:
    """One check at three widths, two seeds each; the interval [p - 0.1, p + 0.1] around a
    predicted value p that depends on the width."""
    rows = []
    for width, predicted in ((8, 1.0), (16, 0.5), (32, 0.25)):
        for seed in (0, 1):
            rows.append({"width": width, "seed": seed, "check": "slope", "predicted": predicted,
                         "low": predicted - 0.1, "high": predicted + 0.1,
                         "measured": predicted + 0.01 * seed, "stderr": 0.02,
                         "verdict": "pass", "status": "completed"})
    return pd.DataFrame(rows)


def test_each_check_is_drawn_over_its_prediction_and_accepted_band() -> None:
    (figure,) = sweep_figures(_results(), ["width", "seed"]).values()
    ax = figure.axes[0]
    (predicted,) = [line for line in ax.get_lines() if line.get_label() == "predicted"]
    np.testing.assert_allclose(predicted.get_xdata(), [8, 16, 32])
    np.testing.assert_allclose(predicted.get_ydata(), [1.0, 0.5, 0.25])
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)
               and c.get_label() == "accepted"]
    vertices = band.get_paths()[0].vertices
    for width, p in ((8, 1.0), (16, 0.5), (32, 0.25)):
        ys = vertices[np.isclose(vertices[:, 0], width), 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [p - 0.1, p + 0.1])
    assert "'slope'" in figure.get_label()
    assert "band" in figure.get_label()


def test_a_one_sided_interval_is_drawn_within_the_data() -> None:
    results = _results().assign(low=-np.inf)
    (figure,) = sweep_figures(results, ["width", "seed"]).values()
    low, high = figure.axes[0].get_ylim()
    assert np.isfinite([low, high]).all()
    assert low > -2.0
