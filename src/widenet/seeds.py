"""Seeds: the largest one a study or a command accepts, and the seeds of a study's draws,
derived from the config's seed and a task's parameters.

Torch- and numpy-free at import (numpy is imported where a seed is derived), so that commands
which only validate their options (``widenet kernel --help``, ``widenet --version``) stay fast.
"""

from __future__ import annotations

MAX_SEED = 2**63 - 1
"""The largest seed of a study or a command: the run store keeps seeds as signed 64-bit
integers."""


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2^32) determined by the integers ``parts`` through numpy's SeedSequence
    hash: every draw of a task follows from the config's seed and the task's own parameters,
    so tasks are independent of each other and a resumed run repeats them exactly."""
    import numpy as np

    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])
