"""Seeds: the largest one a study or a command accepts, and the seeds of a study's draws,
derived from the config's seed and a task's parameters.

Torch- and numpy-free at import (numpy is imported where a seed is derived), so that commands
which only validate their options (``widenet kernel --help``, ``widenet --version``) stay fast.
"""

from __future__ import annotations

from numbers import Integral

from widenet.errors import WidenetError

MAX_SEED = 2**63 - 1
"""The largest seed of a study or a command: the run store keeps seeds as signed 64-bit
integers."""


def check_seed(value: object, name: str = "seed") -> int:
    """Return ``value`` as an int, or raise unless it is an integer in [0, MAX_SEED]."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value <= MAX_SEED:
        raise WidenetError(f"{name} must be an integer from 0 to 2**63 - 1, got {value!r}")
    return int(value)


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2^32) determined by the integers ``parts`` through numpy's SeedSequence
    hash: every draw of a task follows from the config's seed and the task's own parameters,
    so tasks are independent of each other and a resumed run repeats them exactly."""
    import numpy as np

    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])
