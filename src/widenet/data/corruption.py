"""Label corruption: an exact, seeded fraction of the train labels replaced, and recorded."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from widenet.data.dataset import Dataset
from widenet.errors import WidenetError
from widenet.seeds import check_seed
from widenet.validation import finite_real

#: Spawn key of the corruption's random stream, so that which labels get corrupted is
#: independent of the draws that made the data from the same seed.
_CORRUPTION_STREAM = 1


def corruption_generator(seed: int) -> torch.Generator:
    """The torch generator :func:`corrupt_labels` draws from for ``seed``: seeded with a
    64-bit state derived from ``numpy.random.SeedSequence(seed, spawn_key=(1,))``."""
    seed = check_seed(seed)
    state = np.random.SeedSequence(seed, spawn_key=(_CORRUPTION_STREAM,)).generate_state(
        1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def corruption_fraction(value: object) -> float:
    """Return ``value`` as a float if it is a valid corruption fraction (a number in [0, 1])."""
    fraction = finite_real(value, "corrupt", minimum=0.0)
    if fraction > 1:
        raise WidenetError(f"corrupt is the fraction of train labels to corrupt and must lie in "
                           f"[0, 1], got {value!r}")
    return fraction


def corrupt_labels(dataset: Dataset, fraction: float, *, seed: int = 0) -> Dataset:
    """``dataset`` with exactly m = round(fraction * n) of its n train labels replaced.

    The m points are a uniformly random subset (drawn from :func:`corruption_generator`).
    Classification: each chosen label y becomes (y + s) mod C with s uniform in 1..C-1, i.e.
    a different class chosen uniformly. Regression: each chosen point i gets the (original)
    target row of a uniformly chosen other train point j != i. The test split is untouched.
    The result's ``corrupted`` field is the bool mask of the chosen points (all False when
    m = 0). ``round`` is Python's (halves to even).
    """
    fraction = corruption_fraction(fraction)
    n = dataset.y.shape[0]
    m = round(fraction * n)
    if m > 0 and dataset.task == "classification" and dataset.classes < 2:
        raise WidenetError(f"cannot corrupt labels of {dataset.name!r}: it has a single class, "
                           "so there is no other class to flip to")
    if m > 0 and dataset.task == "regression" and n < 2:
        raise WidenetError(f"cannot corrupt targets of {dataset.name!r}: it has one train "
                           "point, so there is no other target to take")
    mask = torch.zeros(n, dtype=torch.bool, device=dataset.y.device)
    if m == 0:
        return replace(dataset, corrupted=mask)
    generator = corruption_generator(seed)
    chosen = torch.randperm(n, generator=generator)[:m]
    labels = dataset.y.cpu()
    if dataset.task == "classification":
        shift = torch.randint(1, dataset.classes, (m,), generator=generator)
        replacement = (labels[chosen] + shift) % dataset.classes
    else:
        replacement = labels[(chosen + torch.randint(1, n, (m,), generator=generator)) % n]
    chosen = chosen.to(mask.device)
    y = dataset.y.clone()
    y[chosen] = replacement.to(mask.device)
    mask[chosen] = True
    return replace(dataset, y=y, corrupted=mask)
