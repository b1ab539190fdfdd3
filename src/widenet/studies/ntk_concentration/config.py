"""The config of the ``ntk-concentration`` study and the activations it admits."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from widenet.activation_names import parse_activation
from widenet.errors import WidenetError
from widenet.seeds import MAX_SEED
from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values

if TYPE_CHECKING:
    from widenet.activations import AbsLinear

Pattern = Literal["constant", "quadratic"]
Sweep = Literal["depth", "outputs", "points", "family"]
SWEEPS: tuple[Sweep, ...] = ("depth", "outputs", "points", "family")
"""The structure sweeps at the probe width (docs/studies/ntk-concentration.md)."""


class ConcentrationConfig(StudyConfig):
    """The sizes of the concentration study (defaults: the DEFAULT preset)."""

    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds the inputs and, with "
                      "each task's parameters, every network's weights")
    points: PositiveInt = Field(default=16, description="n, the number of inputs x_i, drawn "
                                "uniformly on the sphere ||x||^2 = d (seeded by `seed`)")
    dim: PositiveInt = Field(default=8, description="d, the input dimension")
    outputs: PositiveInt = Field(default=1, description="k, the number of outputs; K(theta) "
                                 "is then nk x nk and K_inf = (1/n) Theta (x) I_k")
    activations: list[str] = Field(
        default=["abs", "relu"], description="activations of the family phi = a s + b|s| "
        "(abs, relu, identity, leaky_relu:SLOPE), each normalized to a^2 + b^2 = 1")
    patterns: list[Pattern] = Field(
        default=["constant", "quadratic"], description="width patterns: constant (m_l = m) "
        "and quadratic (m_l = l^2 m)")
    depths: list[PositiveInt] = Field(default=[2, 4], description="L, numbers of hidden layers")
    widths: list[PositiveInt] = Field(
        default=[16, 32, 64, 128, 256, 512, 1024, 2048],
        description="m for the constant pattern (at least 3 distinct values)")
    base_widths: list[PositiveInt] = Field(
        default=[8, 16, 32, 64, 128, 256],
        description="m for the quadratic pattern, whose last hidden layer is L^2 m wide "
        "(at least 3 distinct values)")
    seeds: PositiveInt = Field(default=24, description="networks drawn per (pattern, depth, m) "
                               "and activation")

    probe_width: PositiveInt = Field(default=32, description="m of the structure sweeps "
                                     "(the quadratic pattern's m_l = l^2 m)")
    probe_depth: PositiveInt = Field(default=3, description="L of the outputs, points and "
                                     "family sweeps")
    depth_sweep: list[PositiveInt] = Field(
        default=[1, 2, 3, 4, 6], description="L swept at the probe width, both patterns "
        "(empty: no depth sweep; else at least 3 distinct values)")
    outputs_sweep: list[PositiveInt] = Field(
        default=[1, 2, 4, 8, 16, 32], description="k swept at the probe width and depth, "
        "quadratic pattern (empty: none; else at least 3 distinct values)")
    points_sweep: list[PositiveInt] = Field(
        default=[8, 16, 32, 64, 128], description="n swept at the probe width and depth, "
        "quadratic pattern (empty: none; else at least 3 distinct values)")
    family: list[str] = Field(
        default=["abs", "leaky_relu:-0.5", "relu", "leaky_relu:0.2", "leaky_relu:0.5"],
        description="activations a s + b|s| with b != 0 compared on the same networks at the "
        "probe width and depth (empty: none; else at least 3)")
    probe_seeds: PositiveInt = Field(default=24, description="networks per point of each "
                                     "structure sweep (>= 2)")

    QUICK: ClassVar[dict[str, Any]] = {"depths": [2], "widths": [16, 32, 64, 128, 256, 512, 1024],
                                       "base_widths": [8, 16, 32, 64, 128, 256, 512],
                                       "seeds": 16, "depth_sweep": [], "outputs_sweep": [],
                                       "points_sweep": [], "family": []}
    """The quick preset leaves the structure sweeps out: at a few seconds' budget (8 networks
    per point) 6 of their 9 checks were inconclusive; the default preset runs them."""

    @field_validator("activations")
    @classmethod
    def _known_activations(cls, names: list[str]) -> list[str]:
        distinct_activations(names)
        return names

    @field_validator("probe_seeds")
    @classmethod
    def _two_seeds(cls, value: int) -> int:
        if value < 2:
            raise ValueError("a standard error over seeds needs at least 2 networks")
        return value

    @field_validator("depth_sweep", "outputs_sweep", "points_sweep")
    @classmethod
    def _sweep_values(cls, values: list[int]) -> list[int]:
        if values and len(distinct_values(values)) < 3:
            raise ValueError("a sweep's fit needs at least 3 distinct values (or none)")
        return sorted(values)

    @field_validator("family")
    @classmethod
    def _family(cls, names: list[str]) -> list[str]:
        if not names:
            return names
        if len(distinct_activations(names)) < 3:
            raise ValueError("the family comparison needs at least 3 activations (or none)")
        for name in names:
            if normalized_coefficients(name)[1] == 0:
                raise ValueError(f"{name!r} has b = 0 (Delta = 0): the bound's Delta^-2 is "
                                 "infinite; use activations with b != 0")
        return names

    @field_validator("patterns", "depths")
    @classmethod
    def _distinct_values(cls, values: list[Any]) -> list[Any]:
        return distinct_values(values)

    @field_validator("widths", "base_widths")
    @classmethod
    def _fit_widths(cls, values: list[int]) -> list[int]:
        if len(distinct_values(values)) < 3:
            raise ValueError("a power-law fit needs at least 3 distinct widths")
        return sorted(values)


def normalized_coefficients(name: str) -> tuple[float, float]:
    """(a, b) of the activation ``name`` of the family a s + b|s|, rescaled to a^2 + b^2 = 1.

    With a^2 + b^2 = 1 the edge of chaos is sigma_w = 1 (docs/theory.md section 2), the setting of
    the concentration bound (section 4); relu becomes (s + |s|) / sqrt(2). Raises
    WidenetError for an unknown name or one outside the family. Reads the name only (no torch),
    so that the config validates without it.
    """
    coefficients = parse_activation(name).coefficients
    if coefficients is None:
        raise WidenetError(f"activation {name!r} is not of the form a s + b|s|, which the "
                         "concentration bound covers; use abs, relu, identity or leaky_relu:SLOPE")
    a, b = coefficients
    norm = math.hypot(a, b)
    return a / norm, b / norm


def distinct_activations(names: list[str]) -> list[str]:
    """``names`` itself, if it is not empty and no two name the same activation of the family
    (compared by their normalized coefficients: 'leaky_relu:-1' is abs, 'leaky_relu:1' is
    identity)."""
    distinct_values(names, "activations")
    seen: dict[tuple[float, float], str] = {}
    for name in names:
        twin = seen.setdefault(normalized_coefficients(name), name)
        if twin != name:
            raise ValueError(f"{name!r} and {twin!r} are the same activation; list each once")
    return names


def normalized_activation(name: str) -> AbsLinear:
    """The activation ``name`` with the coefficients :func:`normalized_coefficients` gives."""
    from widenet.activations import ab

    return ab(*normalized_coefficients(name), name=name)
