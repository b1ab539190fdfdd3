"""Fixed data sets from arrays: label encoding, class restriction and the seeded train/test split.

Shared by scikit-learn's shipped sets and user files, and usable directly on in-memory arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from widenet.data.dataset import INPUT_RANKS, Dataset
from widenet.errors import WidenetError
from widenet.seeds import check_seed
from widenet.validation import floating_dtype, nonnegative_int, positive_int

#: numpy dtype kinds read as class labels (bool, integers, strings, objects that are all
#: strings) and as numeric features.
_LABEL_KINDS = "biuUSO"
_FEATURE_KINDS = "biuf"


def _as_numpy(value: object, name: str) -> np.ndarray:
    """``value`` (a numpy array, torch tensor or nested list) as a numpy array."""
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise WidenetError(f"{name} cannot be read as an array ({error}); pass a numpy array "
                           "or a torch tensor") from None


def _features(value: object, name: str) -> np.ndarray:
    """Check that ``value`` is a finite, numeric, non-empty array of features (n, d) or of
    images (n, C, L) or (n, C, H, W), and return it."""
    x = _as_numpy(value, name)
    if x.ndim not in INPUT_RANKS or 0 in x.shape:
        raise WidenetError(f"{name} must be a non-empty (n, d) array of features (or of images "
                           f"(n, C, L) or (n, C, H, W)), got shape {x.shape}; reshape one "
                           "feature per point to (n, 1)")
    if x.dtype.kind not in _FEATURE_KINDS:
        raise WidenetError(f"{name} must be numeric, got dtype {x.dtype}; convert or drop "
                           "non-numeric features")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise WidenetError(f"{name} contains NaN or inf values; clean or drop those points")
    return x


def _targets(value: object, name: str, points: int) -> np.ndarray:
    """Check that ``value`` holds one label or target row per point and return it: class
    labels as a 1-D array, regression targets as a finite (n, k) float array."""
    y = _as_numpy(value, name)
    if y.ndim == 0 or y.shape[0] != points:
        raise WidenetError(f"{name} must hold one target per point ({points}), got shape "
                           f"{y.shape}")
    if y.dtype.kind in _LABEL_KINDS:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise WidenetError(f"{name} holds class labels (dtype {y.dtype}) and must have shape "
                               f"(n,), got {y.shape}; pass class indices, not one-hot rows")
        if y.dtype.kind == "O" and not all(isinstance(label, str) for label in y):
            raise WidenetError(f"{name} is an object array that is not all strings; pass "
                               "class labels as integers or strings")
        return y.astype(str) if y.dtype.kind == "O" else y
    if y.dtype.kind != "f":
        raise WidenetError(f"{name} must hold float regression targets or integer/string class "
                           f"labels, got dtype {y.dtype}")
    if y.ndim > 2:
        raise WidenetError(f"{name} holds regression targets and must have shape (n,) or (n, k), "
                           f"got {y.shape}")
    if not np.isfinite(y).all():
        raise WidenetError(f"{name} contains NaN or inf values; clean or drop those points")
    return y.reshape(points, -1)


def _target_kind(y: np.ndarray) -> str:
    """What ``y`` holds, in words: two splits must hold the same kind of target."""
    if y.ndim == 2:
        return f"float targets with {y.shape[1]} column(s)"
    return "string class labels" if y.dtype.kind in "US" else "numeric class labels"


def _fixed_test(name: str, x: np.ndarray, y: np.ndarray, x_test: object,
                y_test: object) -> tuple[np.ndarray, np.ndarray] | None:
    """The checked fixed test split (x_test, y_test), or None when neither is given."""
    if x_test is None and y_test is None:
        return None
    if x_test is None or y_test is None:
        raise WidenetError(f"{name!r}: give both x_test and y_test for a fixed test split, or "
                           "neither")
    xt = _features(x_test, "x_test")
    yt = _targets(y_test, "y_test", xt.shape[0])
    if xt.shape[1:] != x.shape[1:]:
        what = (f"{x.shape[1]} features but x_test has {xt.shape[1]}" if x.ndim == xt.ndim == 2
                else f"points of shape {x.shape[1:]} but x_test has {xt.shape[1:]}")
        raise WidenetError(f"{name!r}: x has {what}; both splits need the same features")
    if _target_kind(y) != _target_kind(yt):
        raise WidenetError(f"{name!r}: y holds {_target_kind(y)} but y_test holds "
                           f"{_target_kind(yt)}; give both splits the same kind of target")
    return xt, yt


Split = tuple[np.ndarray, np.ndarray]


def _encode(name: str, splits: list[Split], classes: int | None) -> tuple[list[Split], int]:
    """Labels replaced by their index among the sorted distinct labels of all splits; with
    ``classes`` = k only the points of codes 0..k-1 kept. Returns the splits and the count."""
    values = np.unique(np.concatenate([y for _, y in splits]))
    if len(values) < 2:
        raise WidenetError(f"{name!r} has a single class label ({values[0]!r}); "
                           "classification needs at least two classes")
    codes = [np.searchsorted(values, y).astype(np.int64) for _, y in splits]
    if classes is None:
        return [(x, c) for (x, _), c in zip(splits, codes, strict=True)], len(values)
    classes = positive_int(classes, "classes")
    if not 2 <= classes <= len(values):
        raise WidenetError(f"classes must lie between 2 and {len(values)} (the number of "
                           f"classes of {name!r}), got {classes}")
    return [(x[c < classes], c[c < classes])
            for (x, _), c in zip(splits, codes, strict=True)], classes


def _train_size(source: str, available: int, n: int | None, n_test: int) -> int:
    """The number of train points: ``n``, or with None all ``available`` but ``n_test``;
    ``source`` names the points in messages."""
    if n is None:
        if available - n_test < 1:
            raise WidenetError(f"{source} has {available} points, so n_test={n_test} leaves "
                               "none to train on; lower n_test")
        return available - n_test
    if n + n_test > available:
        raise WidenetError(f"{source} has {available} points, fewer than n + n_test = {n} + "
                           f"{n_test}; lower n or n_test")
    return n


def _test_subset(source: str, split: Split, n_test: int, seed: int) -> Split:
    """The first ``n_test`` points of the seeded shuffle of a fixed test ``split``."""
    x, y = split
    if n_test > x.shape[0]:
        raise WidenetError(f"the test split of {source} has {x.shape[0]} points, fewer than "
                           f"n_test={n_test}; lower n_test (0 takes all of it)")
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    keep = order[:n_test].numpy()
    return x[keep], y[keep]


def from_arrays(name: str, x: object, y: object, *, x_test: object = None,
                y_test: object = None, n: int | None = None, n_test: int = 0, seed: int = 0,
                classes: int | None = None, dtype: torch.dtype = torch.float64) -> Dataset:
    """A Dataset from arrays (numpy, torch or lists): inputs ``x`` (n, d), or images
    (n, C, L) or (n, C, H, W), and targets ``y``.

    Task: float targets are regression, reshaped to (n, k) ((n,) becomes (n, 1)); integer,
    bool or string labels are classification, encoded as the index of the label among the
    sorted distinct labels of all given points (so 0..C-1, the same code in both splits).
    ``classes=k`` keeps only the points of the first k classes (codes 0..k-1); the sizes below
    count the points kept.

    Split: without ``x_test`` the points are shuffled by a permutation drawn from
    ``torch.Generator().manual_seed(seed)``; the first ``n`` are the train split (``None``:
    all but ``n_test``) and the next ``n_test`` the test split. With ``x_test`` and ``y_test``
    those are the test split (``n_test=0``: all of it; ``n_test`` > 0: the first ``n_test``
    points of its own shuffle, drawn from the same seed) and the train split is the first
    ``n`` points (``None``: all) of the seeded shuffle of ``x``. Inputs (and regression
    targets) are cast to ``dtype``.
    """
    dtype = floating_dtype(dtype)
    n = None if n is None else positive_int(n, "n")
    n_test = nonnegative_int(n_test, "n_test")
    seed = check_seed(seed)
    x_np = _features(x, "x")
    y_np = _targets(y, "y", x_np.shape[0])
    fixed_test = _fixed_test(name, x_np, y_np, x_test, y_test)
    splits = [(x_np, y_np)] if fixed_test is None else [(x_np, y_np), fixed_test]
    classification = y_np.ndim == 1
    count = None
    if classification:
        splits, count = _encode(name, splits, classes)
    elif classes is not None:
        raise WidenetError(f"classes applies to classification, but {name!r} has float "
                           "(regression) targets; store class labels as integers or strings")
    x_np, y_np = splits[0]
    order = torch.randperm(x_np.shape[0], generator=torch.Generator().manual_seed(seed))
    order = order.numpy()
    source = repr(name) if classes is None else f"{name!r} restricted to {classes} classes"
    if fixed_test is None:
        n = _train_size(source, x_np.shape[0], n, n_test)
        test = order[n:n + n_test]
        splits.append((x_np[test], y_np[test]))
    else:
        n = _train_size(source, x_np.shape[0], n, 0)
        if n_test:
            splits[1] = _test_subset(source, splits[1], n_test, seed)
    train = order[:n]
    target_type = (np.int64, torch.int64) if classification else (np.float64, dtype)
    x_t, x_test_t = (torch.from_numpy(inputs.astype(np.float64)).to(dtype)
                     for inputs in (x_np[train], splits[1][0]))
    y_t, y_test_t = (torch.from_numpy(targets.astype(target_type[0])).to(target_type[1])
                     for targets in (y_np[train], splits[1][1]))
    task = "classification" if classification else "regression"
    return Dataset(name, task, x_t, y_t, x_test_t, y_test_t, classes=count)
