"""Width patterns for the hidden layers of an MLP."""

from __future__ import annotations

from widenet.validation import nonnegative_int, positive_int


def constant(m: int, depth: int) -> list[int]:
    """n_l = m for l = 1..depth."""
    m, depth = positive_int(m, "m"), nonnegative_int(depth, "depth")
    return [m] * depth


def polynomial(m: int, depth: int, power: int = 2) -> list[int]:
    """n_l = l^power * m for l = 1..depth (power = 2: the quadratic pattern of the EOC papers)."""
    m, depth = positive_int(m, "m"), nonnegative_int(depth, "depth")
    power = nonnegative_int(power, "power")
    return [layer**power * m for layer in range(1, depth + 1)]
