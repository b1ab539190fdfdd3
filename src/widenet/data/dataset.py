"""The Dataset record every loader returns: train and test tensors, named and seeded."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

Task = Literal["regression", "classification"]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (n, d) and targets ``y``, with a held-out test split (possibly empty).

    Regression targets have shape (n, k); classification labels are int64 class indices of
    shape (n,), with ``classes`` the number of classes. ``name`` says how to rebuild the set.
    """

    name: str
    task: Task
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int | None = None

    @property
    def dim(self) -> int:
        """The input dimension d."""
        return int(self.x.shape[1])

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Dataset:
        """The same data on ``device``; inputs (and regression targets) cast to ``dtype``."""
        def move(t: torch.Tensor, is_target: bool) -> torch.Tensor:
            cast = dtype if (not is_target or self.task == "regression") else None
            return t.to(device=device, dtype=cast)
        return replace(self, x=move(self.x, False), y=move(self.y, True),
                       x_test=move(self.x_test, False), y_test=move(self.y_test, True))
