"""The single entry point: ``load_dataset(name, ...)`` for every named set and user file."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from widenet.data.arrays import from_arrays
from widenet.data.corruption import corrupt_labels, corruption_fraction
from widenet.data.dataset import Dataset, Task
from widenet.data.files import read_csv, read_npz
from widenet.data.image_files import read_image_folder
from widenet.data.sklearn_sets import SKLEARN_SETS, sklearn_arrays
from widenet.data.synthetic import (
    noisy_clusters,
    separable,
    sphere_regression,
    teacher_student,
    two_spirals,
)
from widenet.data.transforms import normalization
from widenet.data.transforms import normalize as normalize_inputs
from widenet.errors import ARGUMENT, WidenetError
from widenet.seeds import check_seed
from widenet.validation import finite_real, floating_dtype, nonnegative_int, positive_int


@dataclass(frozen=True)
class _Synthetic:
    """A synthetic set: its generator, task, what ``noise`` means for it (None: not
    accepted) and its input dimension when that is fixed."""

    make: Callable[..., Dataset]
    task: Task
    noise: str | None
    fixed_dim: int | None = None


SYNTHETIC_SETS = {
    "sphere": _Synthetic(sphere_regression, "regression", None),
    "teacher": _Synthetic(teacher_student, "regression", "target noise std"),
    "separable": _Synthetic(separable, "classification", None),
    "noisy": _Synthetic(noisy_clusters, "classification", "label-flip probability"),
    "spirals": _Synthetic(two_spirals, "classification", "input jitter std", fixed_dim=2),
}
FILE_SUFFIXES = (".npz", ".csv")


def dataset_names() -> tuple[str, ...]:
    """The built-in dataset names: the synthetic sets, then scikit-learn's shipped sets."""
    return (*SYNTHETIC_SETS, *SKLEARN_SETS)


def load_dataset(name: str | os.PathLike[str], *, n: int | None = None, n_test: int = 0,
                 dim: int | None = None, seed: int = 0, normalize: str = "none",
                 corrupt: float = 0.0, noise: float = 0.0, classes: int | None = None,
                 label_column: str | None = None, dtype: torch.dtype = torch.float64
                 ) -> Dataset:
    """The data set ``name`` with ``n`` train and ``n_test`` test points, reproducible from
    its arguments (same arguments, bit-identical tensors).

    ``name`` is a synthetic set ("sphere", "teacher", "separable", "noisy", "spirals": ``n``
    and, except for "spirals" (d = 2), ``dim`` required; test points are fresh draws from the
    same distribution), a scikit-learn shipped set ("digits", "breast-cancer", "iris",
    "wine", "diabetes"; "digits-images" is digits as (n, 1, 8, 8) images), a path ending in
    ".npz" or ".csv" (``label_column`` required for CSV) or a folder holding CIFAR-10's binary
    batches or MNIST's IDX files (images (n, C, H, W), pixel values 0..255, the distributed
    train/test split); for these fixed sets a seeded shuffle gives ``n`` train points (None:
    all but ``n_test``) and ``n_test`` test points (with a distributed test split: a seeded
    subset of it, 0 = all of it), and ``dim``, if given, must match the number of features.
    ``noise`` means: "teacher" target noise std, "noisy" label-flip probability, "spirals"
    input jitter std; other sets refuse a nonzero value. ``classes=k`` keeps the first k
    classes of a fixed classification set (synthetic ones are binary: None or 2).
    Then ``normalize`` ("none", "standardize" with train statistics, "sphere" for
    ||x||^2 = d per point) is applied, and finally ``corrupt``: exactly
    round(corrupt * n) train labels replaced (see :func:`corrupt_labels`), recorded in the
    result's ``corrupted`` mask. See docs/data.md for every distribution.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise WidenetError(f"dataset name must be a string, got {type(name).__name__}")
    n = None if n is None else positive_int(n, "n")
    n_test = nonnegative_int(n_test, "n_test")
    dim = None if dim is None else positive_int(dim, "dim")
    seed = check_seed(seed)
    normalize = normalization(normalize)
    corrupt = corruption_fraction(corrupt)
    noise = finite_real(noise, "noise", minimum=0.0)
    dtype = floating_dtype(dtype)
    if label_column is not None and not name.lower().endswith(".csv"):
        raise WidenetError(f"{ARGUMENT} applies to .csv files only, but the dataset is "
                           f"{name!r}; leave out {ARGUMENT}", argument="label_column")
    if name in SYNTHETIC_SETS:
        dataset = _synthetic(name, n, n_test, dim, seed, noise, classes, dtype)
    else:
        dataset = _fixed(name, n, n_test, dim, seed, noise, classes, label_column, dtype)
    return corrupt_labels(normalize_inputs(dataset, normalize), corrupt, seed=seed)


def _noise_users() -> str:
    """The sets that accept ``noise``, with its meaning for each."""
    return ", ".join(f"{key} ({spec.noise})" for key, spec in SYNTHETIC_SETS.items()
                     if spec.noise is not None)


def _synthetic(name: str, n: int | None, n_test: int, dim: int | None, seed: int,
               noise: float, classes: int | None, dtype: torch.dtype) -> Dataset:
    """Check the options that apply to the synthetic set ``name`` and generate it."""
    spec = SYNTHETIC_SETS[name]
    if n is None:
        raise WidenetError(f"{ARGUMENT} is required for the synthetic set {name!r}: pass the "
                           f"number of train points, e.g. {ARGUMENT}=100", argument="n")
    if spec.noise is None and noise != 0:
        raise WidenetError(f"noise does not apply to {name!r}; it applies to {_noise_users()}")
    if spec.task == "regression" and classes is not None:
        raise WidenetError(f"classes does not apply to {name!r}, a regression set; leave "
                           "classes=None")
    if spec.task == "classification" and classes not in (None, 2):
        raise WidenetError(f"{name!r} is a binary classification set; classes must be None "
                           f"or 2, got {classes!r}")
    options = {"n_test": n_test, "seed": seed, "dtype": dtype}
    if spec.noise is not None:
        options["noise"] = noise
    if spec.fixed_dim is None:
        if dim is None:
            raise WidenetError(f"{ARGUMENT} is required for the synthetic set {name!r}: pass "
                               f"the input dimension, e.g. {ARGUMENT}=10", argument="dim")
        return spec.make(n, dim, **options)
    if dim not in (None, spec.fixed_dim):
        raise WidenetError(f"{name!r} has input dimension {spec.fixed_dim}; leave out "
                           f"{ARGUMENT}, got {ARGUMENT}={dim}", argument="dim")
    return spec.make(n, **options)


def _fixed(name: str, n: int | None, n_test: int, dim: int | None, seed: int, noise: float,
           classes: int | None, label_column: str | None, dtype: torch.dtype) -> Dataset:
    """Read the shipped set or user file ``name`` and split it."""
    suffix = os.path.splitext(name)[1].lower()
    folder = name not in SKLEARN_SETS and os.path.isdir(os.path.expanduser(name))
    if name not in SKLEARN_SETS and suffix not in FILE_SUFFIXES and not folder:
        raise WidenetError(f"unknown dataset {name!r}; known names: "
                           f"{', '.join(dataset_names())}, a path to a file ending in "
                           f"{' or '.join(FILE_SUFFIXES)}, or a folder of CIFAR-10 binary "
                           "batches or MNIST IDX files")
    if noise != 0:
        raise WidenetError(f"noise does not apply to the fixed set {name!r}; it applies to "
                           f"{_noise_users()}")
    if name in SKLEARN_SETS:
        arrays = sklearn_arrays(name)
    elif folder:
        arrays = read_image_folder(name)
    elif suffix == ".npz":
        arrays = read_npz(name)
    elif label_column is None:
        raise WidenetError(f"{name!r} is a CSV file: pass {ARGUMENT}=<name of the column "
                           "that holds the labels>", argument="label_column")
    else:
        arrays = read_csv(name, label_column)
    dataset = from_arrays(name, **arrays, n=n, n_test=n_test, seed=seed, classes=classes,
                          dtype=dtype)
    if dim is not None and dim != dataset.dim:
        raise WidenetError(f"{name!r} has {dataset.dim} features, not {ARGUMENT}={dim}; leave "
                           f"out {ARGUMENT} for a fixed set", argument="dim")
    return dataset
