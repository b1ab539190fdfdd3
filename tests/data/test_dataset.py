"""The Dataset record: construction checks, outputs and moving between dtypes."""

from __future__ import annotations

import pytest
import torch

from widenet import WidenetError
from widenet.data import Dataset

X = torch.zeros(4, 3, dtype=torch.float64)
LABELS = torch.tensor([0, 1, 2, 1])
TARGETS = torch.ones(4, 2, dtype=torch.float64)


def test_outputs_dim_and_to() -> None:
    regression = Dataset("r", "regression", X, TARGETS, X[:2], TARGETS[:2])
    classification = Dataset("c", "classification", X, LABELS, X[:0], LABELS[:0], classes=3,
                             corrupted=torch.zeros(4, dtype=torch.bool))
    assert (regression.dim, regression.outputs) == (3, 2)
    assert (classification.dim, classification.outputs) == (3, 3)
    low = classification.to(dtype=torch.float32)
    assert low.x.dtype == torch.float32
    assert low.y.dtype == torch.int64
    assert torch.equal(low.corrupted, classification.corrupted)
    assert regression.to(dtype=torch.float32).y.dtype == torch.float32


@pytest.mark.parametrize(("fields", "message"), [
    ({"task": "ranking"}, "task must be one of"),
    ({"x": X[:, 0]}, r"floating-point \(n, d\) tensor"),
    ({"x": X.long()}, r"floating-point \(n, d\) tensor"),
    ({"y": LABELS[:3]}, "4 inputs but 3 targets"),
    ({"y": LABELS.double()}, "int64 tensor of shape"),
    ({"y": LABELS + 1}, r"labels must lie in 0..2"),
    ({"classes": None}, "needs classes >= 1"),
    ({"x_test": torch.zeros(0, 2, dtype=torch.float64)}, "x has 3 features but x_test has 2"),
    ({"corrupted": torch.zeros(3, dtype=torch.bool)}, "bool mask of shape"),
    ({"task": "regression", "classes": None}, "regression targets must be"),
])
def test_inconsistent_records_are_refused(fields: dict[str, object], message: str) -> None:
    record = {"name": "bad", "task": "classification", "x": X, "y": LABELS,
              "x_test": X[:0], "y_test": LABELS[:0], "classes": 3, **fields}
    with pytest.raises(WidenetError, match=message):
        Dataset(**record)


def test_image_records() -> None:
    images = torch.zeros(4, 3, 5, 5, dtype=torch.float64)
    record = Dataset("i", "classification", images, LABELS, images[:1], LABELS[:1], classes=3)
    assert (record.images, record.input_shape, record.dim) == (True, (3, 5, 5), 75)
    assert not Dataset("f", "classification", X, LABELS, X[:1], LABELS[:1], classes=3).images
    with pytest.raises(WidenetError, match=r"x has points of shape \(3, 5, 5\) but x_test has "
                                           r"\(3, 4, 4\)"):
        Dataset("i", "classification", images, LABELS, images[:1, :, :4, :4], LABELS[:1],
                classes=3)
    with pytest.raises(WidenetError, match=r"or images \(n, C, L\) or \(n, C, H, W\)"):
        Dataset("i", "classification", images[..., None], LABELS, images[:1, ..., None],
                LABELS[:1], classes=3)
