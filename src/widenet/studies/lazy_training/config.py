"""The config of the ``lazy-training`` study."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from widenet.errors import WidenetError
from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values

PositiveInt = Annotated[int, Field(gt=0)]
ALPHA_RANGE = (1e-6, 1e12)
"""The accepted output scales: past them 1/alpha^2 (the loss scale) and alpha (f - f_0) leave
the range where float64 training means anything."""
Alpha = Annotated[float, Field(ge=ALPHA_RANGE[0], le=ALPHA_RANGE[1])]


class LazyTrainingConfig(StudyConfig):
    """The keys of the ``lazy-training`` study (docs/studies/lazy-training.md)."""

    activations: list[str] = Field(
        default=["tanh", "relu"], min_length=1,
        description="student activations (a smooth one tests the O(1/alpha) theorem; relu/abs "
                    "are kinked)")
    widths: list[PositiveInt] = Field(default=[128, 512], min_length=1,
                                      description="hidden width m of the student")
    depth: PositiveInt = Field(default=2, description="number of hidden layers L")
    alphas: list[Alpha] = Field(
        default=[0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], min_length=2,
        description="output scales alpha (a log grid; sorted and de-duplicated), each in "
                    "[1e-6, 1e12]")
    alpha_min: Alpha = Field(
        default=32.0, description="slopes are fitted over the alphas >= alpha_min (in "
                                  "[1e-6, 1e12])")
    slope_tolerance: float = Field(
        default=0.15, gt=0, lt=0.5, description="accepted |slope + 1| of the checked slopes")
    seeds: int = Field(default=4, ge=2, description="independent replicates (data and "
                                                    "student) per activation and width")
    n: int = Field(default=64, ge=2, description="training points")
    n_test: PositiveInt = Field(default=64, description="test points")
    dim: PositiveInt = Field(default=8, description="input dimension d (||x||^2 = d)")
    noise: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                         description="std of the teacher's label noise")
    lr_fraction: float = Field(default=0.5, gt=0, lt=1,
                               description="learning rate as a fraction of the stability limit "
                                           "2n / lambda_max(K_0)")
    steps: PositiveInt = Field(default=100, description="GD steps (the same for every alpha)")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [128], "seeds": 3,
                                       "alphas": [0.25, 1, 4, 16, 64, 256, 1024], "alpha_min": 16.0}

    @field_validator("activations")
    @classmethod
    def _known_activations(cls, names: list[str]) -> list[str]:
        from widenet.activations import get_activation  # torch, for the edge of chaos

        for name in names:
            try:
                get_activation(name).edge_of_chaos(0.0)
            except WidenetError as error:
                raise ValueError(f"activation {name!r}: {error}") from None
        return distinct_values(names, "activations")

    @field_validator("widths")
    @classmethod
    def _distinct_widths(cls, widths: list[int]) -> list[int]:
        return distinct_values(widths, "widths")

    @field_validator("alphas")
    @classmethod
    def _sorted_alphas(cls, alphas: list[float]) -> list[float]:
        return sorted(set(alphas))

    @field_validator("alpha_min")
    @classmethod
    def _fit_range(cls, alpha_min: float, info: ValidationInfo) -> float:
        alphas = info.data.get("alphas", [])
        if sum(alpha >= alpha_min for alpha in alphas) < 2:
            raise ValueError(f"alpha_min={alpha_min:g} leaves fewer than two alphas to fit a "
                             "slope over; lower it or add larger alphas")
        return alpha_min
