"""Label corruption: an exact count, a different class, another point's target, a mask."""

from __future__ import annotations

import math

import pytest
import torch

from widenet import WidenetError
from widenet.data import Dataset, corrupt_labels


def _classification(n: int, classes: int) -> Dataset:
    x = torch.zeros(n, 2, dtype=torch.float64)
    y = torch.arange(n) % classes
    return Dataset("c", "classification", x, y, x[:3], y[:3], classes=classes)


def _regression(n: int) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 2, dtype=torch.float64)
    y = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return Dataset("r", "regression", x, y, x[:3], y[:3])


@pytest.mark.parametrize(("n", "fraction", "count"), [
    (50, 0.3, 15), (5, 0.5, 2), (7, 0.5, 4), (10, 0.0, 0), (10, 1.0, 10), (3, 0.01, 0)])
def test_exactly_round_fraction_labels_flip_to_another_class(n: int, fraction: float,
                                                             count: int) -> None:
    ds = _classification(n, 3)
    out = corrupt_labels(ds, fraction, seed=4)
    changed = out.y != ds.y
    assert int(changed.sum()) == count
    assert torch.equal(out.corrupted, changed)  # every chosen label changed, no other one
    assert torch.equal(out.y_test, ds.y_test)
    assert bool(((out.y >= 0) & (out.y < 3)).all())


def test_new_class_is_uniform_over_the_other_classes() -> None:
    n, classes = 9000, 10
    ds = _classification(n, classes)
    shift = (corrupt_labels(ds, 1.0, seed=1).y - ds.y) % classes
    p = 1 / (classes - 1)
    for s in range(1, classes):
        frequency = float((shift == s).double().mean())
        assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert int((shift == 0).sum()) == 0


def test_regression_targets_come_from_other_points() -> None:
    ds = _regression(40)
    out = corrupt_labels(ds, 0.25, seed=2)
    assert int(out.corrupted.sum()) == 10
    assert torch.equal(out.y[~out.corrupted], ds.y[~out.corrupted])
    for i in out.corrupted.nonzero().flatten().tolist():
        sources = (ds.y == out.y[i]).all(dim=1).nonzero().flatten().tolist()
        assert len(sources) == 1
        assert sources[0] != i


def test_seeding_and_nesting() -> None:
    ds = _classification(100, 4)
    low, high = corrupt_labels(ds, 0.1, seed=3), corrupt_labels(ds, 0.3, seed=3)
    assert torch.equal(low.y, corrupt_labels(ds, 0.1, seed=3).y)
    assert bool(high.corrupted[low.corrupted].all())  # growing fractions corrupt supersets
    assert not torch.equal(low.corrupted, corrupt_labels(ds, 0.1, seed=4).corrupted)


@pytest.mark.parametrize(("dataset", "fraction", "message"), [
    (_classification(10, 3), 1.5, r"must lie in \[0, 1\]"),
    (_classification(10, 3), -0.1, "corrupt must be >= 0"),
    (_classification(10, 3), float("nan"), "corrupt must be a finite real number"),
    (_classification(10, 1), 0.5, "single class"),
    (_regression(1), 1.0, "one train point"),
])
def test_bad_corruption(dataset: Dataset, fraction: float, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        corrupt_labels(dataset, fraction)
