"""Per-axis arguments of the spatial layers."""

from __future__ import annotations

from widenet.errors import WidenetError
from widenet.validation import positive_int


def per_axis(value: int | tuple[int, ...], dims: int, name: str) -> tuple[int, ...]:
    """``value`` as ``dims`` positive integers (an int is repeated)."""
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims:
        raise WidenetError(f"{name} needs {dims} values, got {value!r}")
    return tuple(positive_int(v, name) for v in values)
