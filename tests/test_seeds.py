"""Seeds: what check_seed takes (integers of Python, numpy and 0-dim integer tensors) and
refuses (booleans, floats, other shapes, values outside [0, 2**63 - 1])."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widenet.errors import WidenetError
from widenet.seeds import MAX_SEED, check_seed


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), np.array(3), torch.tensor(3),
                                   torch.tensor(3, dtype=torch.uint8)])
def test_integers_of_every_kind_become_ints(value: object) -> None:
    seed = check_seed(value)
    assert (type(seed), seed) == (int, 3)


def test_the_largest_seed_is_taken_from_a_tensor() -> None:
    assert check_seed(torch.tensor(MAX_SEED)) == MAX_SEED


@pytest.mark.parametrize("value", [True, np.bool_(True), torch.tensor(True), 3.0,
                                   np.float64(3.0), torch.tensor(3.0), np.array(3.0),
                                   torch.tensor([3]), np.array([3]), "3", None, -1,
                                   torch.tensor(-1), np.int64(-1), MAX_SEED + 1])
def test_everything_else_is_refused_with_the_range_message(value: object) -> None:
    with pytest.raises(WidenetError, match=r"seed must be an integer from 0 to 2\*\*63 - 1, got "):
        check_seed(value)
