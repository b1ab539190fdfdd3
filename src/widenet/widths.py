"""Width patterns for the hidden layers of an MLP.

Widths are refused above ``MAX_WIDTH`` = 2^63 - 1, the largest tensor dimension torch can
express, and depths whose list of widths would not fit in the free memory, before anything is
built: a polynomial pattern's widths are bounded from their logarithm first, so that a huge
power (10^9, say) is refused at once instead of computing a number of a billion digits.
"""

from __future__ import annotations

import math

from widenet.errors import WidenetError
from widenet.memory import require_memory
from widenet.validation import nonnegative_int, positive_int

MAX_WIDTH = 2**63 - 1
# Bytes a list of widths takes per entry: its pointer, and (polynomial) the int it points to.
_POINTER_BYTES = 8
_INT_BYTES = 36


def constant(m: int, depth: int) -> list[int]:
    """n_l = m for l = 1..depth."""
    m, depth = _checked(m, depth)
    _require_list(depth, _POINTER_BYTES)
    return [m] * depth


def polynomial(m: int, depth: int, power: int = 2) -> list[int]:
    """n_l = l^power * m for l = 1..depth (power = 2: the quadratic pattern of the EOC papers)."""
    m, depth = _checked(m, depth)
    power = nonnegative_int(power, "power")
    # the largest width, depth^power * m, bounded through its logarithm before it is computed
    if depth > 1 and (power * math.log2(depth) + math.log2(m) > 64
                      or depth**power * m > MAX_WIDTH):
        raise WidenetError(f"polynomial widths n_l = l^{power} * {m} reach {depth}^{power} * "
                           f"{m} at layer {depth}, beyond {MAX_WIDTH:,} (2^63 - 1, the largest "
                           "tensor dimension); use a smaller m, depth or power")
    _require_list(depth, _POINTER_BYTES + _INT_BYTES)
    return [layer**power * m for layer in range(1, depth + 1)]


def _checked(m: object, depth: object) -> tuple[int, int]:
    """(m, depth) as ints: m a positive integer at most MAX_WIDTH, depth a non-negative one."""
    m, depth = positive_int(m, "m"), nonnegative_int(depth, "depth")
    if m > MAX_WIDTH:
        raise WidenetError(f"m must be at most {MAX_WIDTH:,} (2^63 - 1, the largest tensor "
                           f"dimension), got {m}")
    return m, depth


def _require_list(depth: int, entry_bytes: int) -> None:
    """Refuse a depth whose list of widths would not fit in the free memory."""
    require_memory(depth * entry_bytes, f"a list of {depth:,} widths", "use a smaller depth")
