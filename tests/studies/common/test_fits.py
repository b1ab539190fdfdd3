"""Shared estimators of the studies."""

from __future__ import annotations

import math

import pytest

from widenet.errors import WidenetError
from widenet.studies.common.fits import all_diverged, mean_stderr, power_law_fit_or_nan


def test_mean_stderr_is_the_sample_mean_and_its_standard_error() -> None:
    mean, stderr = mean_stderr([1.0, 2.0, 6.0])
    assert mean == pytest.approx(3.0)
    assert stderr == pytest.approx(math.sqrt(7.0 / 3.0))  # sample variance 7, over n = 3


def test_one_value_has_no_standard_error() -> None:
    mean, stderr = mean_stderr([2.5])
    assert mean == 2.5
    assert math.isnan(stderr)
    with pytest.raises(WidenetError, match="at least one value"):
        mean_stderr([])


def test_all_diverged_names_the_runs_only_when_none_completed() -> None:
    assert all_diverged(["completed", "diverged"], "training runs", "lower lr") == ""
    assert all_diverged([], "training runs", "lower lr") == ""
    reason = all_diverged(["diverged"] * 3, "training runs", "lower lr")
    assert reason.startswith("all 3 training runs diverged")
    assert reason.endswith("; lower lr")


def test_power_law_fit_or_nan() -> None:
    fit = power_law_fit_or_nan([1.0, 2.0, 4.0], [3.0, 3.0 * 2**-0.5, 1.5])
    assert fit.slope == pytest.approx(-0.5)
    assert fit.points == 3
    empty = power_law_fit_or_nan([1.0, 2.0, 4.0], [math.nan, 0.0, 1.0])  # one usable x
    assert math.isnan(empty.slope)
    assert math.isnan(empty.slope_stderr)
    assert empty.points == 1
