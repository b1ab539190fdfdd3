"""scikit-learn's shipped sets: sizes, tasks and the first-k-classes restriction."""

from __future__ import annotations

import pytest
import torch

from widenet import WidenetError
from widenet.data import SKLEARN_SETS, load_dataset, sklearn_arrays

SIZES = {  # name: (points, point shape, classes or None for regression)
    "digits": (1797, (64,), 10),
    "digits-images": (1797, (1, 8, 8), 10),
    "breast-cancer": (569, (30,), 2),
    "iris": (150, (4,), 3),
    "wine": (178, (13,), 3),
    "diabetes": (442, (10,), None),
}


def test_every_shipped_set_is_listed() -> None:
    assert set(SIZES) == set(SKLEARN_SETS)


@pytest.mark.parametrize("name", SIZES)
def test_sizes_and_tasks(name: str) -> None:
    points, shape, classes = SIZES[name]
    ds = load_dataset(name, n_test=20, seed=1)
    assert ds.x.shape == (points - 20, *shape)
    assert ds.x_test.shape == (20, *shape)
    assert ds.images == (len(shape) > 1)
    assert ds.classes == classes
    if classes is None:
        assert ds.y.shape == (points - 20, 1)
        assert ds.y.dtype == torch.float64
    else:
        assert ds.y.dtype == torch.int64
        assert set(torch.cat([ds.y, ds.y_test]).tolist()) == set(range(classes))


def test_digits_restricted_to_two_classes() -> None:
    arrays = sklearn_arrays("digits")
    zeros_and_ones = int((arrays["y"] < 2).sum())
    ds = load_dataset("digits", classes=2)
    assert ds.classes == 2
    assert len(ds.x) == zeros_and_ones
    assert set(ds.y.tolist()) == {0, 1}


def test_unknown_shipped_set() -> None:
    with pytest.raises(WidenetError, match="choose one of digits, digits-images, breast-cancer"):
        sklearn_arrays("mnist")


def test_digits_images_are_the_digits_pixels_row_by_row() -> None:
    flat = load_dataset("digits", n=50, n_test=10, seed=4, classes=3, normalize="standardize")
    images = load_dataset("digits-images", n=50, n_test=10, seed=4, classes=3,
                          normalize="standardize")
    assert images.x.shape == (50, 1, 8, 8)
    assert (images.dim, images.input_shape) == (64, (1, 8, 8))
    assert torch.equal(images.x.flatten(1), flat.x)
    assert torch.equal(images.x_test.flatten(1), flat.x_test)
    assert torch.equal(images.y, flat.y)
    raw = sklearn_arrays("digits")["x"][0]
    assert raw[:8].tolist() == sklearn_arrays("digits-images")["x"][0, 0, 0].tolist()
