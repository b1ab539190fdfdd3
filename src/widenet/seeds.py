"""Seeds: the largest one a study or a command accepts, and the seeds of a study's draws,
derived from the config's seed and a task's parameters.

Torch- and numpy-free at import (numpy is imported where a seed is derived), so that commands
which only validate their options (``widenet kernel --help``, ``widenet --version``) stay fast.
"""

from __future__ import annotations

import sys
from numbers import Integral

from widenet.errors import WidenetError

MAX_SEED = 2**63 - 1
"""The largest seed of a study or a command: the run store keeps seeds as signed 64-bit
integers."""


def check_seed(value: object, name: str = "seed") -> int:
    """Return ``value`` as an int, or raise unless it is an integer in [0, MAX_SEED].

    Integers are Python and numpy integers and 0-dim integer torch tensors or numpy arrays
    (``torch.tensor(3)``); booleans and floating-point numbers are refused.
    """
    number = _integer_scalar(value)
    if isinstance(number, bool) or not isinstance(number, Integral) \
            or not 0 <= number <= MAX_SEED:
        raise WidenetError(f"{name} must be an integer from 0 to 2**63 - 1, got {value!r}")
    return int(number)


def _integer_scalar(value: object) -> object:
    """A 0-dim integer torch tensor or numpy array as an int; anything else unchanged. Neither
    library is imported here: a value of one exists only once its library is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.ndim == 0 \
            and not (value.is_floating_point() or value.is_complex()) \
            and value.dtype != torch.bool:
        return int(value.item())
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray) and value.ndim == 0 \
            and value.dtype.kind in "iu":
        return int(value)
    return value


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2^32) determined by the integers ``parts`` through numpy's SeedSequence
    hash: every draw of a task follows from the config's seed and the task's own parameters,
    so tasks are independent of each other and a resumed run repeats them exactly."""
    import numpy as np

    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])
