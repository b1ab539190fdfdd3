"""Field checks shared by the studies' configs (they raise ValueError, which pydantic turns
into a one-line config error naming the key). None imports torch: a config is validated before
anything runs (``widenet sweep --dry-run``)."""

from __future__ import annotations

from typing import Any

from widenet.activation_names import parse_activation
from widenet.errors import WidenetError


def known_activation(name: str) -> str:
    """``name`` itself, if it names a built-in activation (one that
    :func:`widenet.get_activation` resolves; see :mod:`widenet.activation_names`)."""
    try:
        parse_activation(name)
    except WidenetError as error:
        raise ValueError(str(error)) from None
    return name


def distinct_widths(values: list[int]) -> list[int]:
    """The widths sorted, if there are at least two and none is repeated (a trend in the
    width needs two points)."""
    if len(values) < 2:
        raise ValueError("a trend in the width needs at least 2 distinct widths")
    return sorted(distinct_values(values, "widths"))


def distinct_values(values: list[Any], what: str = "values") -> list[Any]:
    """``values`` itself, if it is not empty and holds no value twice (``what`` names the
    values in the message: "the list has repeated depths")."""
    if not values:
        raise ValueError("the list must not be empty")
    if len(set(values)) != len(values):
        raise ValueError(f"the list has repeated {what}")
    return values
