"""load_dataset: names, option checks, and normalization and corruption applied in order."""

from __future__ import annotations

import pytest
import torch

from tests.data.helpers import same_data
from widenet import WidenetError
from widenet.data import (
    corrupt_labels,
    dataset_names,
    load_dataset,
    normalize,
    separable,
    teacher_student,
)

SYNTHETIC = {"sphere": {"dim": 4}, "teacher": {"dim": 4, "noise": 0.1},
             "separable": {"dim": 4}, "noisy": {"dim": 4, "noise": 0.1},
             "spirals": {"noise": 0.05}}


def test_names() -> None:
    assert dataset_names() == ("sphere", "teacher", "separable", "noisy", "spirals", "digits",
                               "digits-images", "breast-cancer", "iris", "wine", "diabetes")


@pytest.mark.parametrize("name", [*SYNTHETIC, "iris", "diabetes"])
def test_a_config_reproduces_the_set_exactly(name: str) -> None:
    options = {"n": 30, "n_test": 10, "corrupt": 0.2, **SYNTHETIC.get(name, {})}
    first = load_dataset(name, seed=3, **options)
    assert same_data(first, load_dataset(name, seed=3, **options))
    assert torch.equal(first.corrupted, load_dataset(name, seed=3, **options).corrupted)
    other = load_dataset(name, seed=4, **options)
    assert not torch.equal(first.x, other.x)
    assert int(first.corrupted.sum()) == 6


def test_generators_behind_the_names() -> None:
    direct = teacher_student(20, 4, n_test=5, seed=2, noise=0.3)
    assert same_data(load_dataset("teacher", n=20, n_test=5, dim=4, seed=2, noise=0.3), direct)
    assert load_dataset("spirals", n=5, dim=2).dim == 2


def test_normalize_then_corrupt() -> None:
    ds = load_dataset("separable", n=40, n_test=10, dim=3, seed=1, normalize="standardize",
                      corrupt=0.25)
    expected = corrupt_labels(normalize(separable(40, 3, n_test=10, seed=1), "standardize"),
                              0.25, seed=1)
    assert same_data(ds, expected)
    assert torch.equal(ds.corrupted, expected.corrupted)
    assert int((ds.y != separable(40, 3, n_test=10, seed=1).y).sum()) == 10
    assert torch.allclose(ds.x.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-14)


def test_sphere_normalization_of_a_fixed_set() -> None:
    ds = load_dataset("wine", n=50, n_test=10, normalize="sphere", dtype=torch.float64)
    for x in (ds.x, ds.x_test):
        assert torch.allclose((x**2).sum(1), torch.full((len(x),), 13.0, dtype=torch.float64),
                              rtol=0, atol=1e-12)


def test_no_corruption_gives_an_all_false_mask() -> None:
    ds = load_dataset("iris", n=10)
    assert torch.equal(ds.corrupted, torch.zeros(10, dtype=torch.bool))


@pytest.mark.parametrize(("name", "options", "message"), [
    ("mnist", {}, r"unknown dataset 'mnist'; known names: sphere, .*diabetes, a path to a "
                  r"file ending in .npz or .csv, or a folder of CIFAR-10 binary batches or "
                  r"MNIST IDX files"),
    (3, {}, "dataset name must be a string"),
    ("teacher", {"dim": 3}, "n is required for the synthetic set 'teacher'"),
    ("teacher", {"n": 3}, "dim is required for the synthetic set 'teacher'"),
    ("spirals", {"n": 3, "dim": 3}, "'spirals' has input dimension 2"),
    ("sphere", {"n": 3, "dim": 2, "noise": 0.1},
     r"noise does not apply to 'sphere'; it applies to teacher \(target noise std\), noisy "
     r"\(label-flip probability\), spirals \(input jitter std\)"),
    ("separable", {"n": 3, "dim": 2, "noise": 0.1}, "noise does not apply to 'separable'"),
    ("digits", {"noise": 0.1}, "noise does not apply to the fixed set 'digits'"),
    ("teacher", {"n": 3, "dim": 2, "classes": 2}, "classes does not apply to 'teacher'"),
    ("noisy", {"n": 3, "dim": 2, "classes": 3}, "binary classification set; classes must be"),
    ("digits", {"classes": 1}, "classes must lie between 2 and 10"),
    ("digits", {"classes": 11}, "classes must lie between 2 and 10"),
    ("diabetes", {"classes": 2}, "classes applies to classification"),
    ("digits", {"dim": 10}, "'digits' has 64 features, not dim=10"),
    ("digits", {"n": 1700, "n_test": 200}, "'digits' has 1797 points, fewer than n"),
    ("iris", {"classes": 2, "n": 100, "n_test": 1}, "restricted to 2 classes has 100 points"),
    ("iris", {"label_column": "y"}, "label_column applies to .csv files only"),
    ("iris", {"normalize": "l2"}, "normalize must be one of none, standardize, sphere"),
    ("iris", {"corrupt": 1.5}, r"must lie in \[0, 1\]"),
    ("iris", {"seed": -1}, "seed must be an integer from 0 to"),
    ("iris", {"n": 0}, "n must be a positive integer"),
    ("iris", {"n_test": 2.0}, "n_test must be a non-negative integer"),
    ("iris", {"dtype": torch.int64}, "floating-point torch dtype"),
    ("noisy", {"n": 3, "dim": 2, "noise": 2.0}, "label-flip probability"),
])
def test_bad_options(name: object, options: dict[str, object], message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        load_dataset(name, **options)  # type: ignore[arg-type]
