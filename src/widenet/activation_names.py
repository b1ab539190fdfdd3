"""The names of the built-in activations, read without torch.

:func:`widenet.activations.get_activation` resolves a string through :func:`parse_activation`,
and the studies' configs check their activation names with it, so that validating a config
(``widenet sweep --dry-run``) imports no torch. The names: ``relu``, ``abs`` and ``identity``
(members of the family phi(s) = a s + b|s|, whose (a, b) are kept here), ``erf``, ``tanh``,
``gelu``, ``softplus``, ``sin``, and ``leaky_relu`` or ``leaky_relu:SLOPE`` (slope 0.01 by
default), the family member that is s for s >= 0 and slope s below.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from widenet.errors import WidenetError

FAMILY: dict[str, tuple[float, float]] = {"relu": (0.5, 0.5), "identity": (1.0, 0.0),
                                          "abs": (0.0, 1.0)}
"""The named members of the family phi(s) = a s + b|s|, with their (a, b)."""

OTHERS = ("erf", "tanh", "gelu", "softplus", "sin")
"""The named activations outside that family."""

NAMES = (*FAMILY, *OTHERS)
"""Every plain name (``leaky_relu``, which may carry a slope, apart)."""

LEAKY_RELU_SLOPE = 0.01
"""The slope of ``leaky_relu`` written without one."""

MAX_SLOPE = 1e150
"""The largest |slope| a name takes: the duals need a^2 + b^2 = (1 + slope^2) / 2 in float64."""


@dataclass(frozen=True)
class ActivationName:
    """A parsed activation name: ``name`` (one of :data:`NAMES`, or ``"leaky_relu"`` with its
    ``slope``; the slope is None for every other name)."""

    name: str
    slope: float | None = None

    @property
    def coefficients(self) -> tuple[float, float] | None:
        """(a, b) with phi(s) = a s + b|s| if the activation is of that family (so positively
        1-homogeneous: phi(t s) = t phi(s) for t >= 0), else None."""
        if self.slope is not None:
            return leaky_relu_coefficients(self.slope)
        return FAMILY.get(self.name)


def leaky_relu_coefficients(slope: float) -> tuple[float, float]:
    """(a, b) of leaky ReLU (s for s >= 0, slope s below):
    ((1 + slope) / 2) s + ((1 - slope) / 2) |s|."""
    return (1.0 + slope) / 2.0, (1.0 - slope) / 2.0


_SLOPE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
"""A slope as written in a name: a plain decimal number, with an optional exponent."""


def parse_activation(spec: str) -> ActivationName:
    """The activation that ``spec`` names; raises WidenetError for an unknown name (listing
    the names and the closest one, whatever its case or surrounding spaces), a colon with
    nothing after it, or a slope that is not a finite decimal number."""
    name, colon, argument = spec.partition(":")
    if name == "leaky_relu":
        if not colon:
            return ActivationName(name, LEAKY_RELU_SLOPE)
        slope = float(argument) if _SLOPE.fullmatch(argument) else math.nan
        if not abs(slope) <= MAX_SLOPE:  # NaN too
            raise WidenetError(f"bad leaky_relu slope in {spec!r}; write a finite decimal "
                               f"number of size at most {MAX_SLOPE:g} after the colon, e.g. "
                               "'leaky_relu:0.1', or leave out the colon for the slope "
                               f"{LEAKY_RELU_SLOPE}")
        return ActivationName(name, slope)
    if name in NAMES and not colon:
        return ActivationName(name)
    close = difflib.get_close_matches(name.strip().lower(), [*NAMES, "leaky_relu"], n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    takes = "; only leaky_relu takes an argument after ':'" if name in NAMES else ""
    raise WidenetError(f"unknown activation {spec!r}{guess}{takes}; the names are "
                       f"{', '.join(sorted([*NAMES, 'leaky_relu:SLOPE']))}")
