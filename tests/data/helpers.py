"""Shared helpers of the data tests."""

from __future__ import annotations

import torch

from widenet.data import Dataset

SPLITS = ("x", "y", "x_test", "y_test")


def same_data(a: Dataset, b: Dataset) -> bool:
    """Whether the two sets hold bit-identical train and test tensors."""
    return all(torch.equal(getattr(a, field), getattr(b, field)) for field in SPLITS)
