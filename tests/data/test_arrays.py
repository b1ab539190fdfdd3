"""Fixed sets from arrays: task inference, label encoding, classes, the seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widenet import WidenetError
from widenet.data import from_arrays

X = np.arange(60, dtype=np.float64).reshape(20, 3)
LABELS = np.array([7, 3, 9] * 6 + [3, 7])  # three classes, sorted: 3 -> 0, 7 -> 1, 9 -> 2


def _permutation(count: int, seed: int) -> np.ndarray:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).numpy()


def test_split_is_the_documented_seeded_shuffle() -> None:
    ds = from_arrays("a", X, LABELS, n=12, n_test=5, seed=8)
    order = _permutation(20, 8)
    codes = np.searchsorted([3, 7, 9], LABELS)
    assert ds.task == "classification"
    assert ds.classes == 3
    assert np.array_equal(ds.x.numpy(), X[order[:12]])
    assert np.array_equal(ds.y.numpy(), codes[order[:12]])
    assert np.array_equal(ds.x_test.numpy(), X[order[12:17]])
    assert np.array_equal(ds.y_test.numpy(), codes[order[12:17]])
    assert from_arrays("a", X, LABELS, n_test=5).x.shape == (15, 3)  # n=None: all the rest


def test_float_targets_are_regression_of_shape_n_k() -> None:
    ds = from_arrays("r", X, X[:, 0] / 2, n_test=2, dtype=torch.float32)
    assert (ds.task, ds.classes) == ("regression", None)
    assert ds.y.shape == (18, 1)
    assert ds.y.dtype == torch.float32
    assert torch.equal(ds.y[:, 0], ds.x[:, 0] / 2)
    assert from_arrays("r", X, X[:, :2]).y.shape == (20, 2)


def test_string_and_bool_labels_are_classes() -> None:
    strings = from_arrays("s", X[:4], np.array(["dog", "cat", "dog", "emu"], dtype=object),
                          seed=1)
    order = _permutation(4, 1)
    assert strings.classes == 3
    assert np.array_equal(strings.y.numpy(), np.array([1, 0, 1, 2])[order])
    unicode = from_arrays("u", X[:4], np.array(["dog", "cat", "dog", "emu"]), seed=1)
    assert torch.equal(unicode.y, strings.y)
    assert from_arrays("b", X[:4], np.array([True, False, True, True])).classes == 2


def test_classes_keeps_the_first_k_classes() -> None:
    ds = from_arrays("a", X, LABELS, classes=2)
    assert ds.classes == 2
    assert len(ds.x) == int(np.isin(LABELS, [3, 7]).sum())
    assert set(ds.y.tolist()) == {0, 1}
    assert set(ds.x[:, 0].tolist()) == set(X[np.isin(LABELS, [3, 7]), 0].tolist())


def test_fixed_test_split_is_kept_whole_and_encoded_jointly() -> None:
    ds = from_arrays("f", X, LABELS, x_test=X[:3] + 0.5, y_test=np.array([9, 11, 3]), n=10,
                     seed=2)
    assert ds.classes == 4  # 3, 7, 9 and 11 (only in the test split)
    assert np.array_equal(ds.x_test.numpy(), X[:3] + 0.5)
    assert ds.y_test.tolist() == [2, 3, 0]
    assert np.array_equal(ds.x.numpy(), X[_permutation(20, 2)[:10]])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x": X[:, 0]}, r"non-empty \(n, d\) array"),
    ({"x": X.astype(str)}, "x must be numeric"),
    ({"x": np.where(X > 50, np.nan, X)}, "NaN or inf"),
    ({"y": LABELS[:5]}, r"one target per point \(20\)"),
    ({"y": np.eye(20, dtype=int)}, "not one-hot rows"),
    ({"y": X[:, 0] + 1j}, "float regression targets or integer/string class labels"),
    ({"y": np.full(20, np.inf)}, "y contains NaN or inf"),
    ({"y": np.zeros(20, dtype=int)}, "single class label"),
    ({"y": np.array(["a", None] * 10, dtype=object)}, "object array that is not all strings"),
    ({"x": torch.ones(20, 3, dtype=torch.bfloat16)}, "x cannot be read as an array"),
    ({"n": 15, "n_test": 6}, r"'a' has 20 points, fewer than n \+ n_test = 15 \+ 6"),
    ({"n_test": 20}, "leaves none to train on"),
    ({"classes": 4}, r"classes must lie between 2 and 3"),
    ({"classes": 2, "n": 20}, "restricted to 2 classes has 14 points"),
    ({"y": X[:, 0], "classes": 2}, "classes applies to classification"),
    ({"x_test": X}, "give both x_test and y_test"),
    ({"x_test": X, "y_test": LABELS, "n_test": 21}, "test split of 'a' has 20 points, fewer "
                                                    "than n_test=21"),
    ({"x_test": X[:, :2], "y_test": LABELS}, "x has 3 features but x_test has 2"),
    ({"x_test": X, "y_test": X[:, 0]}, "y holds numeric class labels but y_test holds float"),
    ({"dtype": torch.int32}, "floating-point torch dtype"),
    ({"seed": 1.5}, "seed must be an integer from 0 to"),
])
def test_bad_arrays(kwargs: dict[str, object], message: str) -> None:
    arguments = {"x": X, "y": LABELS, **kwargs}
    with pytest.raises(WidenetError, match=message):
        from_arrays("a", **arguments)
