"""The config of the ``ntk-spectrum`` study."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PositiveInt, field_validator, model_validator

from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values


class SpectrumConfig(StudyConfig):
    """The sizes of the spectrum study (defaults: the DEFAULT preset)."""

    points: int = Field(default=100, ge=3, description="n, the number of inputs x_i, drawn "
                        "uniformly on the sphere ||x||^2 = d; K_inf is n x n; >= 3 (the "
                        "inverse-angle law fits one constant to the n(n-1)/2 pairs)")
    dim: int = Field(default=100, ge=2, description="d, the input dimension (>= 2: on the "
                     "sphere of R^1 two inputs are equal or opposite)")
    deltas: list[float] = Field(
        default=[0.25, 0.5, 0.75, 1.0], description="Delta = b^2 of phi(s) = a s + b|s| with "
        "a = sqrt(1 - Delta), b = sqrt(Delta) (1/2: ReLU up to scale, 1: |s|); each in (0, 1]")
    depths: list[PositiveInt] = Field(
        default=[1, 2, 3, 5, 9, 19, 49, 99, 199, 499, 999],
        description="L, numbers of hidden layers; at least 3 of them >= max(depths)/20, and "
        "max(depths) >= 20")
    seeds: PositiveInt = Field(default=3, description="input draws (the same for every Delta "
                               "and depth)")
    angle_points: int = Field(default=16, description="how many of the n inputs (the first) "
                              "the per-layer angle law is measured on; 2 <= angle_points <= n")
    compare_depth: PositiveInt = Field(default=99, description="the depth (one of `depths`) at "
                                       "which convergence is compared across Delta")

    QUICK: ClassVar[dict[str, Any]] = {"deltas": [0.5, 1.0],
                                       "depths": [1, 3, 9, 19, 49, 99, 199, 399],
                                       "seeds": 2, "angle_points": 8, "compare_depth": 19}

    @field_validator("deltas")
    @classmethod
    def _valid_deltas(cls, values: list[float]) -> list[float]:
        for value in distinct_values(values):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"each Delta must be in (0, 1] (Delta = 0 is the identity, "
                                 f"whose angles never shrink), got {value}")
        return sorted(values)

    @field_validator("depths")
    @classmethod
    def _valid_depths(cls, values: list[int]) -> list[int]:
        values = sorted(distinct_values(values))
        if values[-1] < 20:
            raise ValueError("the depth asymptotics need max(depths) >= 20")
        if len(deep_depths(values)) < 3:
            raise ValueError("at least 3 depths must be >= max(depths)/20 for the fits")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> SpectrumConfig:
        if not 2 <= self.angle_points <= self.points:
            raise ValueError(f"angle_points must be in [2, points={self.points}], "
                             f"got {self.angle_points}")
        if self.compare_depth not in self.depths:
            raise ValueError(f"compare_depth={self.compare_depth} must be one of the depths "
                             f"{self.depths}")
        return self


def deep_depths(depths: list[int]) -> list[int]:
    """The depths used for the asymptotic fits: those >= max(depths) / 20."""
    return [depth for depth in depths if 20 * depth >= max(depths)]
