"""The Dataset record every loader returns: train and test tensors, named and seeded."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

from widenet.errors import WidenetError

Task = Literal["regression", "classification"]
TASKS: tuple[Task, ...] = ("regression", "classification")
#: ranks of an input tensor: (n, d) features, (n, C, L) 1-D and (n, C, H, W) 2-D images.
INPUT_RANKS = (2, 3, 4)


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` and targets ``y``, with a held-out test split (possibly empty).

    Inputs are feature vectors (n, d) or images in torch's layout, (n, C, L) or (n, C, H, W);
    both splits have the same point shape :attr:`input_shape`.

    Regression targets are floating-point of shape (n, k); classification labels are int64
    class indices in 0..classes-1 of shape (n,), with ``classes`` the number of classes
    (``None`` for regression). The test split has the same layout with n_test rows.
    ``name`` is the name :func:`widenet.data.load_dataset` was given. ``corrupted`` is a bool
    mask over the train points saying whose label was replaced by label corruption
    (all False when none was; ``None`` when the record was built without recording it).
    Construction checks that the shapes, dtypes and the task agree.
    """

    name: str
    task: Task
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int | None = None
    corrupted: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise WidenetError(f"Dataset task must be one of {TASKS}, got {self.task!r}")
        for split, x, y in (("train", self.x, self.y), ("test", self.x_test, self.y_test)):
            _check_split(self, split, x, y)
        if self.x.shape[1:] != self.x_test.shape[1:]:
            if self.x.ndim == self.x_test.ndim == 2:
                raise WidenetError(f"Dataset {self.name!r}: x has {self.x.shape[1]} features "
                                   f"but x_test has {self.x_test.shape[1]}; both splits need "
                                   "the same d")
            raise WidenetError(f"Dataset {self.name!r}: x has points of shape "
                               f"{tuple(self.x.shape[1:])} but x_test has "
                               f"{tuple(self.x_test.shape[1:])}; both splits need the same "
                               "point shape")
        if self.corrupted is not None and (self.corrupted.dtype != torch.bool
                                           or self.corrupted.shape != (self.x.shape[0],)):
            raise WidenetError(f"Dataset {self.name!r}: corrupted must be a bool mask of shape "
                               f"({self.x.shape[0]},), got {self.corrupted.dtype} of shape "
                               f"{tuple(self.corrupted.shape)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: (d,) for features, (C, L) or (C, H, W) for images."""
        return tuple(int(size) for size in self.x.shape[1:])

    @property
    def images(self) -> bool:
        """Whether the inputs are images (n, C, L) or (n, C, H, W) rather than (n, d)."""
        return self.x.ndim > 2

    @property
    def dim(self) -> int:
        """The input dimension d: the number of features, C*L or C*H*W for images (the
        width of ``x.flatten(1)``)."""
        return math.prod(self.input_shape)

    @property
    def outputs(self) -> int:
        """The number of network outputs the set calls for: k for regression targets of shape
        (n, k), the number of classes for classification."""
        return int(self.y.shape[1]) if self.classes is None else self.classes

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Dataset:
        """The same data on ``device``; inputs (and regression targets) cast to ``dtype``,
        class labels (int64) and the ``corrupted`` mask (bool) keep their dtypes."""
        def move(t: torch.Tensor, is_target: bool) -> torch.Tensor:
            cast = dtype if (not is_target or self.task == "regression") else None
            return t.to(device=device, dtype=cast)
        corrupted = None if self.corrupted is None else self.corrupted.to(device=device)
        return replace(self, x=move(self.x, False), y=move(self.y, True),
                       x_test=move(self.x_test, False), y_test=move(self.y_test, True),
                       corrupted=corrupted)


def _check_split(dataset: Dataset, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise unless ``x`` is a floating (m, d), (m, C, L) or (m, C, H, W) tensor and ``y``
    fits it and the task."""
    where = f"Dataset {dataset.name!r} ({split} split)"
    if x.ndim not in INPUT_RANKS or not x.is_floating_point():
        raise WidenetError(f"{where}: inputs must be a floating-point (n, d) tensor (or images "
                           f"(n, C, L) or (n, C, H, W)), got {x.dtype} of shape "
                           f"{tuple(x.shape)}")
    if y.shape[:1] != x.shape[:1]:
        raise WidenetError(f"{where}: {x.shape[0]} inputs but {y.shape[0] if y.ndim else 0} "
                           "targets; give one target per input")
    if dataset.task == "regression":
        if dataset.classes is not None or y.ndim != 2 or not y.is_floating_point():
            raise WidenetError(f"{where}: regression targets must be a floating-point (n, k) "
                               f"tensor with classes=None, got {y.dtype} of shape "
                               f"{tuple(y.shape)} and classes={dataset.classes!r}")
        return
    if isinstance(dataset.classes, bool) or not isinstance(dataset.classes, int) \
            or dataset.classes < 1:
        raise WidenetError(f"{where}: a classification set needs classes >= 1, got "
                           f"{dataset.classes!r}")
    if y.ndim != 1 or y.dtype != torch.int64:
        raise WidenetError(f"{where}: classification labels must be an int64 tensor of shape "
                           f"(n,), got {y.dtype} of shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= dataset.classes):
        raise WidenetError(f"{where}: labels must lie in 0..{dataset.classes - 1}, got values "
                           f"from {int(y.min())} to {int(y.max())}")
