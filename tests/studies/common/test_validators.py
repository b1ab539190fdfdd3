"""The field checks shared by the studies' configs."""

from __future__ import annotations

import pytest

from widenet.studies.common.validators import distinct_values, distinct_widths, known_activation


def test_distinct_values_returns_the_list_and_names_what_repeats() -> None:
    assert distinct_values([3, 1, 2]) == [3, 1, 2]
    with pytest.raises(ValueError, match="must not be empty"):
        distinct_values([])
    with pytest.raises(ValueError, match="the list has repeated values"):
        distinct_values([1, 2, 1])
    with pytest.raises(ValueError, match="the list has repeated depths"):
        distinct_values([2, 2], "depths")


def test_distinct_widths_sorts_and_needs_two() -> None:
    assert distinct_widths([256, 64]) == [64, 256]
    for values in ([], [64]):
        with pytest.raises(ValueError, match="at least 2 distinct widths"):
            distinct_widths(values)
    with pytest.raises(ValueError, match="repeated widths"):
        distinct_widths([64, 64])


def test_known_activation_turns_the_lookup_error_into_a_value_error() -> None:
    assert known_activation("relu") == "relu"
    with pytest.raises(ValueError, match="nosuch"):
        known_activation("nosuch")
