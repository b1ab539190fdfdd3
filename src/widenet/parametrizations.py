"""Parametrizations of a dense layer (THEORY.md section 1), expressed as data.

A parametrization maps a layer's fan-in and the stds (sigma_w, sigma_b) to a :class:`DenseScaling`:
the std of the stored (trainable) variables at initialization and the constant multipliers the
forward pass applies to them. The forward distribution is the same for all of them,
z = (sigma_w / sqrt(fan_in)) W h + sigma_b b with W, b ~ N(0, 1) in effect; what differs is which
variables gradients are taken with respect to, and so the scale of the empirical NTK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from widenet.errors import WidenetError


@dataclass(frozen=True)
class DenseScaling:
    """z = weight_multiplier * W h + bias_multiplier * b, W ~ N(0, weight_init_std^2) entrywise,
    b ~ N(0, bias_init_std^2)."""

    weight_init_std: float
    weight_multiplier: float
    bias_init_std: float
    bias_multiplier: float


class Parametrization:
    """A named rule for a dense layer's scaling.

    ``finite_ntk`` says whether the empirical NTK has a finite infinite-width limit (it does in
    NTK parametrization and grows with width in the standard one).
    """

    name: str
    finite_ntk: bool

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        """The scaling of a layer with the given fan-in and stds sigma_w, sigma_b."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Parametrization({self.name})"


class NTKParametrization(Parametrization):
    """W, b ~ N(0, 1); multipliers sigma_w / sqrt(fan_in) and sigma_b."""

    name = "ntk"
    finite_ntk = True

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        return DenseScaling(1.0, weight_std / math.sqrt(fan_in), 1.0, bias_std)


class StandardParametrization(Parametrization):
    """W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2); multipliers 1."""

    name = "standard"
    finite_ntk = False

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        return DenseScaling(weight_std / math.sqrt(fan_in), 1.0, bias_std, 1.0)


NTK = NTKParametrization()
STANDARD = StandardParametrization()

_NAMED: dict[str, Parametrization] = {p.name: p for p in (NTK, STANDARD)}


def get_parametrization(spec: str | Parametrization) -> Parametrization:
    """Resolve a parametrization from its name ("ntk" or "standard") or return it unchanged."""
    if isinstance(spec, Parametrization):
        return spec
    if isinstance(spec, str) and spec in _NAMED:
        return _NAMED[spec]
    raise WidenetError(f"unknown parametrization {spec!r}; choose one of {', '.join(_NAMED)}")
