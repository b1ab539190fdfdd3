"""Losses against their formulas, and their refusal of targets that are not their labels."""

from __future__ import annotations

import pytest
import torch

from widenet.dynamics.losses import (
    check_targets,
    cross_entropy,
    exponential,
    logistic,
    mse,
    unchecked,
)
from widenet.dynamics.train import train
from widenet.errors import WidenetError
from widenet.models import MLP


def test_cross_entropy_is_the_mean_negative_log_softmax_of_the_labels() -> None:
    output = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    expected = -torch.log_softmax(output, dim=1)[torch.arange(6), labels].mean()
    torch.testing.assert_close(cross_entropy(output, labels), expected, rtol=1e-15, atol=0)
    assert torch.equal(cross_entropy(output, labels.double()), cross_entropy(output, labels))


@pytest.mark.parametrize(("target", "expected"), [
    (torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1])).double(), r"y\.argmax\(1\)"),
    (torch.tensor([0, 2, 1, 3]), r"class indices 0\.\.2 .* from 0 to 3"),
    (torch.tensor([0, -1, 1, 1]), r"class indices 0\.\.2"),
    (torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64), r"from 0 to 2"),
    (torch.tensor([0, 1]), r"shape \(4,\), got \(2,\)"),
])
def test_cross_entropy_refuses_targets_that_are_not_class_labels(target: torch.Tensor,
                                                                  expected: str) -> None:
    with pytest.raises(WidenetError, match=expected):
        cross_entropy(torch.zeros(4, 3, dtype=torch.float64), target)


@pytest.mark.parametrize("loss", [logistic, exponential])
def test_signed_losses_refuse_labels_other_than_plus_and_minus_one(loss) -> None:
    output = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    margins = labels * output[:, 0]
    expected = torch.log1p(torch.exp(-margins)).mean() if loss is logistic \
        else torch.exp(-margins).mean()
    torch.testing.assert_close(loss(output, labels), expected, rtol=1e-15, atol=0)
    with pytest.raises(WidenetError, match=r"labels -1 and \+1; map 0/1 labels with 2 \* y - 1"):
        loss(output, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))


def test_mse_on_class_labels_for_several_outputs_says_how_to_one_hot_them() -> None:
    with pytest.raises(WidenetError, match=r"one_hot\(y, 3\)\.double\(\), or loss='cross_entropy'"):
        mse(torch.zeros(4, 3), torch.tensor([0, 2, 1, 1]))


def test_mse_on_integer_one_hot_rows_says_to_cast_them() -> None:
    """torch.nn.functional.one_hot returns integers; the message told such targets to use
    one-hot targets."""
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1]), 3)
    with pytest.raises(WidenetError, match=r"integers \(dtype torch.int64\); cast them with "
                       r"y\.double\(\) \(torch\.nn\.functional\.one_hot returns integers\), "
                       r"or train on the class labels y\.argmax\(1\) with "
                       r"loss='cross_entropy'$"):
        mse(torch.zeros(4, 3), one_hot)
    torch.testing.assert_close(mse(torch.zeros(4, 3, dtype=torch.float64), one_hot.double()),
                               torch.tensor(0.5, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_mse_refuses_integer_targets_for_one_output_too(shape: tuple[int, ...]) -> None:
    """One output and one integer per point fit in shape, but they are class labels (or
    need an explicit cast); train regressed on them silently."""
    labels = torch.tensor([0, 2, 1, 1]).reshape(shape)
    # It advised 2 * y - 1 for any labels: wrong for -1/+1 labels and for three classes.
    with pytest.raises(WidenetError, match=r"integers \(dtype torch.int64\); for two classes "
                       r"use loss='logistic' with labels -1/\+1 \(2 \* y - 1 maps 0/1 labels\), "
                       r"for more one output per class and loss='cross_entropy'; to regress on "
                       r"the integers, y\.double\(\)"):
        mse(torch.zeros(4, 1), labels)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = MLP(3, [8], 1, seed=0, dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(WidenetError, match="mse targets hold integers"):
        train(model, x, labels, lr=0.1, steps=2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize(("loss", "outputs", "labels"), [
    (cross_entropy, 3, torch.tensor([0, 2, 1, 1])),
    (logistic, 1, torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)),
    (exponential, 1, torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))])
def test_a_labelled_loss_checked_once_is_the_loss_without_its_check(loss, outputs: int,
                                                                    labels: torch.Tensor) -> None:
    """check_targets refuses what the loss refuses; unchecked(loss) gives the loss's values
    bit for bit; other losses are their own unchecked form and take any targets here."""
    output = torch.randn(4, outputs, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    check_targets(loss, labels, output.shape)
    assert torch.equal(unchecked(loss)(output, labels), loss(output, labels))
    with pytest.raises(WidenetError, match="labels"):
        check_targets(loss, labels + 5, output.shape)
    assert unchecked(mse) is mse
    check_targets(mse, labels + 5, output.shape)
