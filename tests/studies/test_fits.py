"""Shared estimators of the studies."""

from __future__ import annotations

import math

import pytest

from widenet.errors import WidenetError
from widenet.studies.fits import mean_stderr


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
